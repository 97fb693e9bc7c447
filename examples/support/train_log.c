/* The logs a person reads after (or during) a training run: OUT/steps.csv, one row a
 * step, and OUT/epochs.csv, one row an epoch, for a spreadsheet or pandas; and the same
 * numbers as TensorBoard scalars when a log directory is given. */
#include "kx.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_METRICS = 16 };

struct kx_train_log {
    FILE *steps, *epochs;
    kx_tfevents *tb;
    int nmetrics;
    char metric[MAX_METRICS][64];
    char steps_path[4096], epochs_path[4096];
    kiln_status st; /* the first write error */
};

/* A number as a CSV cell: empty for NaN/Inf (pandas reads it as NaN), else %.9g. */
static void cell(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, ",%.9g", v);
    else fputc(',', f);
}

/* The rows of path whose first field is an epoch <= keep (none when keep is 0), as one
 * malloc'd string; "" when the file is missing. The header line is dropped. */
static char *kept_rows(const char *path, int keep) {
    char *out = calloc(1, 1);
    FILE *f = keep > 0 ? fopen(path, "r") : NULL;
    if (!f || !out) {
        if (f) fclose(f);
        return out;
    }
    size_t len = 0;
    char line[4096];
    bool header = true;
    while (fgets(line, sizeof line, f)) {
        if (header) { /* the first line names the columns */
            header = false;
            continue;
        }
        char *end;
        long e = strtol(line, &end, 10);
        if (end == line || *end != ',' || e < 1 || e > keep || !strchr(line, '\n')) continue;
        size_t n = strlen(line);
        char *b = realloc(out, len + n + 1);
        if (!b) break;
        out = b;
        memcpy(out + len, line, n + 1);
        len += n;
    }
    fclose(f);
    return out;
}

static FILE *open_csv(const char *path, const char *header, int resume_epoch) {
    char *rows = kept_rows(path, resume_epoch);
    if (!rows) return kiln_set_error(KILN_STATUS_OOM, "out of memory reading %s", path), NULL;
    FILE *f = fopen(path, "w");
    if (!f) {
        kiln_set_error(KILN_STATUS_IO, "cannot write %s: %s", path, strerror(errno));
    } else {
        fprintf(f, "%s\n%s", header, rows);
        fflush(f);
    }
    free(rows);
    return f;
}

kx_train_log *kx_train_log_open(const char *out, const char *log_dir, int nmetrics,
                                const char *const *metric_names, int resume_epoch) {
    if (nmetrics < 0 || nmetrics > MAX_METRICS || (nmetrics && !metric_names))
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_train_log_open: %d metrics; give 0..%d with names",
                              nmetrics, MAX_METRICS), NULL;
    kx_train_log *l = calloc(1, sizeof *l);
    if (!l) return kiln_set_error(KILN_STATUS_OOM, "kx_train_log_open: out of memory"), NULL;
    l->nmetrics = nmetrics;
    char header[2048] = "epoch,train_loss,heldout_loss";
    for (int k = 0; k < nmetrics; k++) {
        snprintf(l->metric[k], sizeof l->metric[k], "%s", metric_names[k] ? metric_names[k] : "metric");
        size_t n = strlen(header);
        snprintf(header + n, sizeof header - n, ",%s", l->metric[k]);
    }
    kiln_status st = kx_path_join(l->steps_path, sizeof l->steps_path, out, "steps.csv");
    if (!st) st = kx_path_join(l->epochs_path, sizeof l->epochs_path, out, "epochs.csv");
    if (!st && !(l->steps = open_csv(l->steps_path, "epoch,step,loss,lr,images_per_s", resume_epoch)))
        st = kiln_last_status();
    if (!st && !(l->epochs = open_csv(l->epochs_path, header, resume_epoch))) st = kiln_last_status();
    if (!st && log_dir && !(l->tb = kx_tfevents_open(log_dir))) st = kiln_last_status();
    if (st) {
        kx_train_log_close(l);
        return NULL;
    }
    return l;
}

static kiln_status written(kx_train_log *l, FILE *f, const char *path) {
    if (!l->st && (ferror(f) || fflush(f) != 0))
        l->st = kiln_set_error(KILN_STATUS_IO, "writing %s: %s", path, strerror(errno));
    return l->st;
}

kiln_status kx_train_log_step(kx_train_log *l, int epoch, int64_t step, double loss, double lr,
                              double images_per_s) {
    if (!l) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_train_log_step: no log");
    if (l->st) return l->st;
    fprintf(l->steps, "%d,%lld", epoch, (long long)step);
    cell(l->steps, loss);
    cell(l->steps, lr);
    cell(l->steps, images_per_s);
    fputc('\n', l->steps);
    if (written(l, l->steps, l->steps_path)) return l->st;
    if (l->tb) {
        kiln_status st = kx_tfevents_scalar(l->tb, "train/loss", step, loss);
        if (!st) st = kx_tfevents_scalar(l->tb, "train/lr", step, lr);
        if (!st) st = kx_tfevents_scalar(l->tb, "train/images_per_s", step, images_per_s);
        if (st) l->st = st;
    }
    return l->st;
}

kiln_status kx_train_log_epoch(kx_train_log *l, int epoch, double train_loss, double heldout_loss,
                               const double *metrics) {
    if (!l) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_train_log_epoch: no log");
    if (l->st) return l->st;
    fprintf(l->epochs, "%d", epoch);
    cell(l->epochs, train_loss);
    cell(l->epochs, heldout_loss);
    for (int k = 0; k < l->nmetrics; k++) cell(l->epochs, metrics ? metrics[k] : NAN);
    fputc('\n', l->epochs);
    if (written(l, l->epochs, l->epochs_path)) return l->st;
    if (l->tb) {
        kiln_status st = kx_tfevents_scalar(l->tb, "epoch/train_loss", epoch, train_loss);
        if (!st) st = kx_tfevents_scalar(l->tb, "epoch/heldout_loss", epoch, heldout_loss);
        for (int k = 0; k < l->nmetrics && !st; k++) {
            char tag[80];
            snprintf(tag, sizeof tag, "epoch/%s", l->metric[k]);
            st = kx_tfevents_scalar(l->tb, tag, epoch, metrics ? metrics[k] : NAN);
        }
        if (!st) st = kx_tfevents_flush(l->tb); /* an epoch's numbers reach TensorBoard at once */
        if (st) l->st = st;
    }
    return l->st;
}

const char *kx_train_log_events_path(const kx_train_log *l) { return l && l->tb ? kx_tfevents_path(l->tb) : NULL; }
const char *kx_train_log_steps_path(const kx_train_log *l) { return l ? l->steps_path : NULL; }
const char *kx_train_log_epochs_path(const kx_train_log *l) { return l ? l->epochs_path : NULL; }

void kx_train_log_json(const kx_train_log *l, kx_json *j) {
    kx_json_string(j, "steps_csv", kx_train_log_steps_path(l));
    kx_json_string(j, "epochs_csv", kx_train_log_epochs_path(l));
    kx_json_string(j, "events", kx_train_log_events_path(l)); /* null without --log-dir */
}

kiln_status kx_train_log_close(kx_train_log *l) {
    if (!l) return KILN_STATUS_OK;
    kiln_status st = l->st;
    if (l->steps && fclose(l->steps) != 0 && !st) st = kiln_set_error(KILN_STATUS_IO, "closing %s", l->steps_path);
    if (l->epochs && fclose(l->epochs) != 0 && !st) st = kiln_set_error(KILN_STATUS_IO, "closing %s", l->epochs_path);
    kiln_status tst = kx_tfevents_close(l->tb);
    if (!st) st = tst;
    free(l);
    return st;
}

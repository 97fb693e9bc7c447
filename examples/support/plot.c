/* Small plots to PNG: loss and metric curves per epoch, and an eigenvalue spectrum.
 * Axes with "nice" ticks, grid lines, a legend and a title in the built-in 5x7 font. */
#include "kx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t series_colours[] = {0x1F77B4, 0xD62728, 0x2CA02C, 0xFF7F0E,
                                          0x9467BD, 0x8C564B, 0xE377C2, 0x17BECF};
#define N_COLOURS (int)(sizeof series_colours / sizeof series_colours[0])

typedef struct {
    int x0, y0, x1, y1; /* the plot area in pixels, inclusive */
    double xmin, xmax, ymin, ymax, xstep, ystep;
} frame;

static int px_x(const frame *f, double x) {
    return f->x0 + (int)lround((x - f->xmin) / (f->xmax - f->xmin) * (f->x1 - f->x0));
}
static int px_y(const frame *f, double y) {
    return f->y1 - (int)lround((y - f->ymin) / (f->ymax - f->ymin) * (f->y1 - f->y0));
}

/* 1, 2 or 5 times a power of ten, near range / target. */
static double nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag;
}

static void format_tick(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-9) v = 0;
    double a = fabs(v);
    if (a != 0 && (a >= 1e5 || a < 1e-3)) {
        snprintf(buf, n, "%.1e", v);
        return;
    }
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    snprintf(buf, n, "%.*f", decimals > 6 ? 6 : decimals, v);
}

static kiln_status check_size(const char *fn, const char *path, int width, int height) {
    if (!path) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: path is NULL", fn);
    if (width < 160 || height < 120 || width > 8192 || height > 8192)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: a %dx%d plot for '%s' is outside 160x120..8192x8192",
                              fn, width, height, path);
    return KILN_STATUS_OK;
}

/* Lays the frame out in the canvas and draws the grid, axes, ticks, title and x label. */
static void draw_axes(kx_canvas *c, frame *f, const char *title, const char *xlabel, int right) {
    char buf[32];
    int label_w = 0;
    for (double v = f->ymin; v <= f->ymax + f->ystep * 1e-6; v += f->ystep) {
        format_tick(buf, sizeof buf, v, f->ystep);
        int w = kx_canvas_text_width(buf, 1);
        if (w > label_w) label_w = w;
    }
    f->x0 = 10 + label_w + 6;
    f->x1 = c->w - 14 - right;
    f->y0 = title ? 24 : 12;
    f->y1 = c->h - (xlabel ? 34 : 22);
    if (title) kx_canvas_text(c, (c->w - kx_canvas_text_width(title, 2)) / 2, 5, title, 0x202020, 2);
    if (xlabel) kx_canvas_text(c, (f->x0 + f->x1 - kx_canvas_text_width(xlabel, 1)) / 2, c->h - 12, xlabel, 0x202020, 1);
    for (double v = f->ymin; v <= f->ymax + f->ystep * 1e-6; v += f->ystep) {
        int y = px_y(f, v);
        kx_canvas_line(c, f->x0, y, f->x1, y, 0xE4E4E4);
        kx_canvas_line(c, f->x0 - 4, y, f->x0, y, 0x202020);
        format_tick(buf, sizeof buf, v, f->ystep);
        kx_canvas_text(c, f->x0 - 6 - kx_canvas_text_width(buf, 1), y - 3, buf, 0x202020, 1);
    }
    for (double v = ceil(f->xmin / f->xstep) * f->xstep; v <= f->xmax + f->xstep * 1e-6; v += f->xstep) {
        int x = px_x(f, v);
        kx_canvas_line(c, x, f->y0, x, f->y1, 0xE4E4E4);
        kx_canvas_line(c, x, f->y1, x, f->y1 + 4, 0x202020);
        format_tick(buf, sizeof buf, v, f->xstep);
        kx_canvas_text(c, x - kx_canvas_text_width(buf, 1) / 2, f->y1 + 7, buf, 0x202020, 1);
    }
    kx_canvas_line(c, f->x0, f->y0, f->x0, f->y1, 0x202020);
    kx_canvas_line(c, f->x0, f->y1, f->x1, f->y1, 0x202020);
}

static int legend_width(int n, const char *const *names) {
    int w = 0;
    for (int i = 0; i < n; i++) {
        int tw = kx_canvas_text_width(names[i] ? names[i] : "", 1);
        if (tw > w) w = tw;
    }
    return w + 26;
}

/* A boxed legend with its top-right corner at (right, top). */
static void marker(kx_canvas *c, int x, int y, uint32_t rgb) {
    kx_canvas_fill_rect(c, x - 3, y - 3, 7, 7, 0xFFFFFF); /* a white rim keeps touching markers apart */
    kx_canvas_fill_rect(c, x - 2, y - 2, 5, 5, rgb);
}

static void draw_legend_marked(kx_canvas *c, int right, int top, int n, const char *const *names,
                               const uint32_t *colours, bool markers);
static void draw_legend(kx_canvas *c, int right, int top, int n, const char *const *names, const uint32_t *colours) {
    draw_legend_marked(c, right, top, n, names, colours, false);
}

static void draw_legend_marked(kx_canvas *c, int right, int top, int n, const char *const *names,
                               const uint32_t *colours, bool markers) {
    int bw = legend_width(n, names), bh = n * 11 + 6, bx = right - bw, by = top;
    kx_canvas_fill_rect(c, bx, by, bw, bh, 0xFFFFFF);
    kx_canvas_line(c, bx, by, bx + bw - 1, by, 0xA0A0A0);
    kx_canvas_line(c, bx, by + bh - 1, bx + bw - 1, by + bh - 1, 0xA0A0A0);
    kx_canvas_line(c, bx, by, bx, by + bh - 1, 0xA0A0A0);
    kx_canvas_line(c, bx + bw - 1, by, bx + bw - 1, by + bh - 1, 0xA0A0A0);
    for (int i = 0; i < n; i++) {
        int y = by + 4 + i * 11;
        kx_canvas_fill_rect(c, bx + 4, y + 2, 14, 3, colours[i]);
        if (markers) marker(c, bx + 11, y + 3, colours[i]);
        kx_canvas_text(c, bx + 22, y, names[i] ? names[i] : "", 0x202020, 1);
    }
}

static void thick_line(kx_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb) {
    kx_canvas_line(c, x0, y0, x1, y1, rgb);
    kx_canvas_line(c, x0, y0 + 1, x1, y1 + 1, rgb);
}

kiln_status kx_plot_lines_png(const char *path, const char *title, const char *xlabel, int nseries,
                              const kx_series *series, int width, int height) {
    const char *fn = "kx_plot_lines_png";
    kiln_status st = check_size(fn, path, width, height);
    if (st) return st;
    if (nseries < 1 || nseries > 32 || !series)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d series for '%s'; give 1..32", fn, nseries, path);
    int nmax = 0;
    double lo = INFINITY, hi = -INFINITY;
    for (int s = 0; s < nseries; s++) {
        if (series[s].n < 0 || (series[s].n > 0 && !series[s].y))
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: series %d ('%s') has n = %d and %s values", fn, s,
                                  series[s].name ? series[s].name : "", series[s].n, series[s].y ? "some" : "no");
        if (series[s].n > nmax) nmax = series[s].n;
        for (int i = 0; i < series[s].n; i++)
            if (isfinite(series[s].y[i])) {
                if (series[s].y[i] < lo) lo = series[s].y[i];
                if (series[s].y[i] > hi) hi = series[s].y[i];
            }
    }
    if (!(lo <= hi)) lo = 0, hi = 1; /* nothing finite to show: an empty 0..1 frame */
    if (hi - lo < 1e-12 * (fabs(hi) + 1)) lo -= 0.5 * (fabs(lo) + 1e-3), hi += 0.5 * (fabs(hi) + 1e-3);
    frame f = {0};
    f.ystep = nice_step(hi - lo, 5);
    f.ymin = floor(lo / f.ystep) * f.ystep;
    f.ymax = ceil(hi / f.ystep) * f.ystep;
    /* half an epoch each side: the first and last points (a one-epoch run's only one)
     * sit inside the frame, not on its edges */
    f.xmin = 0.5;
    f.xmax = (nmax > 1 ? nmax : 1) + 0.5;
    f.xstep = fmax(1, nice_step(nmax > 1 ? nmax : 1, 8));
    const char *names[32];
    uint32_t colours[32];
    for (int s = 0; s < nseries; s++) names[s] = series[s].name, colours[s] = series_colours[s % N_COLOURS];
    /* The legend goes right of the plot, where it cannot hide a curve. */
    int lw = legend_width(nseries, names);
    if (lw > width / 2) lw = width / 2;
    kx_canvas *c = kx_canvas_new(height, width, 255, 255, 255);
    if (!c) return kiln_last_status();
    draw_axes(c, &f, title, xlabel, lw + 4);
    for (int s = 0; s < nseries; s++) {
        uint32_t col = colours[s];
        int px = 0, py = 0;
        bool have_prev = false;
        for (int i = 0; i < series[s].n; i++) {
            double v = series[s].y[i];
            if (!isfinite(v)) {
                have_prev = false;
                continue;
            }
            int x = px_x(&f, i + 1), y = px_y(&f, v);
            if (have_prev) thick_line(c, px, py, x, y, col);
            px = x, py = y, have_prev = true;
        }
    }
    for (int s = 0; s < nseries; s++) /* markers over every line */
        for (int i = 0; i < series[s].n && series[s].n <= 100; i++)
            if (isfinite(series[s].y[i])) marker(c, px_x(&f, i + 1), px_y(&f, series[s].y[i]), colours[s]);
    draw_legend_marked(c, width - 6, f.y0, nseries, names, colours, true);
    st = kx_canvas_save_png(c, path);
    kx_canvas_free(c);
    return st;
}

/* ---- training curves: losses on a log axis above, metrics on a linear one below ---- */

enum { MAX_TICKS = 64 };
typedef struct {
    int n;
    double at[MAX_TICKS]; /* in frame units (log10 of the value on a log axis) */
    char label[MAX_TICKS][16];
    int nminor;
    double minor[MAX_TICKS];
} ticks;

/* A tick value as a person writes it: 0.2, 0.05, 3, 2e-05. */
static void format_value(char *buf, size_t n, double v, int decade) {
    if (decade < -4 || decade > 5) snprintf(buf, n, "%.0e", v);
    else snprintf(buf, n, "%.*f", decade < 0 ? -decade : 0, v);
}

/* Ticks of a log10 axis over [ymin, ymax] (log units): decades, plus 2 and 5 (or every
 * digit) times them when the span is short enough for them to carry information. */
static void log_ticks(double ymin, double ymax, ticks *t) {
    double span = ymax - ymin;
    static const double all[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, some[] = {1, 2, 5}, one[] = {1};
    const double *ms = span < 0.8 ? all : span < 2.6 ? some : one;
    int nm = span < 0.8 ? 9 : span < 2.6 ? 3 : 1, every = span > 7 ? (int)ceil(span / 7) : 1;
    t->n = t->nminor = 0;
    for (int d = (int)floor(ymin); d <= (int)ceil(ymax); d++)
        for (int m = 1; m <= 9; m++) {
            double v = m * pow(10, d), lv = log10(v);
            if (lv < ymin - 1e-9 || lv > ymax + 1e-9) continue;
            bool major = false;
            for (int k = 0; k < nm; k++) major |= ms[k] == m;
            major &= m > 1 || d % every == 0;
            if (major && t->n < MAX_TICKS) {
                t->at[t->n] = lv;
                format_value(t->label[t->n], sizeof t->label[t->n], v, d);
                t->n++;
            } else if (t->nminor < MAX_TICKS && span < 7) {
                t->minor[t->nminor++] = lv;
            }
        }
}

static void linear_ticks(const frame *f, ticks *t) {
    t->n = t->nminor = 0;
    for (double v = f->ymin; v <= f->ymax + f->ystep * 1e-6 && t->n < MAX_TICKS; v += f->ystep) {
        t->at[t->n] = v;
        format_tick(t->label[t->n], sizeof t->label[t->n], v, f->ystep);
        t->n++;
    }
}

static int ticks_width(const ticks *t) {
    int w = 0;
    for (int i = 0; i < t->n; i++) {
        int tw = kx_canvas_text_width(t->label[i], 1);
        if (tw > w) w = tw;
    }
    return w;
}

/* Grid, y ticks and labels, x ticks (labelled when xlabels), the frame and a caption. */
static void draw_panel(kx_canvas *c, const frame *f, const ticks *t, bool xlabels, const char *caption) {
    char buf[32];
    for (int i = 0; i < t->nminor; i++) {
        int y = px_y(f, t->minor[i]);
        kx_canvas_line(c, f->x0, y, f->x1, y, 0xF2F2F2);
    }
    for (int i = 0; i < t->n; i++) {
        int y = px_y(f, t->at[i]);
        kx_canvas_line(c, f->x0, y, f->x1, y, 0xDCDCDC);
        kx_canvas_line(c, f->x0 - 4, y, f->x0, y, 0x202020);
        kx_canvas_text(c, f->x0 - 6 - kx_canvas_text_width(t->label[i], 1), y - 3, t->label[i], 0x202020, 1);
    }
    for (double v = ceil(f->xmin / f->xstep) * f->xstep; v <= f->xmax + f->xstep * 1e-6; v += f->xstep) {
        int x = px_x(f, v);
        kx_canvas_line(c, x, f->y0, x, f->y1, 0xEBEBEB);
        kx_canvas_line(c, x, f->y1, x, f->y1 + 4, 0x202020);
        if (!xlabels) continue;
        format_tick(buf, sizeof buf, v, f->xstep);
        kx_canvas_text(c, x - kx_canvas_text_width(buf, 1) / 2, f->y1 + 7, buf, 0x202020, 1);
    }
    kx_canvas_line(c, f->x0, f->y0, f->x0, f->y1, 0x202020);
    kx_canvas_line(c, f->x0, f->y1, f->x1, f->y1, 0x202020);
    kx_canvas_line(c, f->x0, f->y0, f->x1, f->y0, 0x202020);
    kx_canvas_line(c, f->x1, f->y0, f->x1, f->y1, 0x202020);
    if (caption) kx_canvas_text(c, f->x0, f->y0 - 10, caption, 0x202020, 1);
}

/* Lines, then markers over them; on a log axis values <= 0 are gaps. */
static void draw_series(kx_canvas *c, const frame *f, int n, const kx_series *series, const uint32_t *colours,
                        bool logy) {
    for (int pass = 0; pass < 2; pass++)
        for (int s = 0; s < n; s++) {
            bool have_prev = false;
            int px = 0, py = 0;
            for (int i = 0; i < series[s].n; i++) {
                double v = series[s].y[i];
                if (!isfinite(v) || (logy && !(v > 0))) {
                    have_prev = false;
                    continue;
                }
                int x = px_x(f, i + 1), y = px_y(f, logy ? log10(v) : v);
                if (pass == 0 && have_prev) thick_line(c, px, py, x, y, colours[s]);
                if (pass == 1 && series[s].n <= 100) marker(c, x, y, colours[s]);
                px = x, py = y, have_prev = true;
            }
        }
}

static kiln_status check_series(const char *fn, const char *path, const char *what, int n, const kx_series *s,
                                int *nmax) {
    if (n < 1 || n > 16 || !s)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d %s series for '%s'; give 1..16", fn, n, what, path);
    for (int k = 0; k < n; k++) {
        if (s[k].n < 0 || (s[k].n > 0 && !s[k].y))
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %s series %d ('%s') has n = %d and %s values", fn,
                                  what, k, s[k].name ? s[k].name : "", s[k].n, s[k].y ? "some" : "no");
        if (s[k].n > *nmax) *nmax = s[k].n;
    }
    return KILN_STATUS_OK;
}

kiln_status kx_plot_training_png(const char *path, const char *title, const char *xlabel, int nlosses,
                                 const kx_series *losses, int nmetrics, const kx_series *metrics, int width,
                                 int height) {
    const char *fn = "kx_plot_training_png";
    int nmax = 0;
    kiln_status st = check_size(fn, path, width, height);
    if (!st) st = check_series(fn, path, "loss", nlosses, losses, &nmax);
    if (!st) st = check_series(fn, path, "metric", nmetrics, metrics, &nmax);
    if (st) return st;
    if (height < 240) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: two panels need a height of 240 or more, "
                                            "not %d", fn, height);
    /* the loss axis: log10 of the positive values, padded a little */
    double llo = INFINITY, lhi = -INFINITY, mlo = INFINITY, mhi = -INFINITY;
    for (int k = 0; k < nlosses; k++)
        for (int i = 0; i < losses[k].n; i++)
            if (isfinite(losses[k].y[i]) && losses[k].y[i] > 0)
                llo = fmin(llo, log10(losses[k].y[i])), lhi = fmax(lhi, log10(losses[k].y[i]));
    for (int k = 0; k < nmetrics; k++)
        for (int i = 0; i < metrics[k].n; i++)
            if (isfinite(metrics[k].y[i])) mlo = fmin(mlo, metrics[k].y[i]), mhi = fmax(mhi, metrics[k].y[i]);
    if (!(llo <= lhi)) llo = -1, lhi = 0; /* no positive loss: an empty 0.1..1 axis */
    double pad = fmax(0.05 * (lhi - llo), 0.04);
    frame lf = {0}, mf = {0};
    lf.ymin = llo - pad, lf.ymax = lhi + pad;
    if (mlo >= 0 && mhi <= 1) { /* rates and overlaps: their whole range, so 0.97 looks like 0.97 */
        mf.ymin = 0, mf.ymax = 1, mf.ystep = 0.2;
    } else {
        if (!(mlo <= mhi)) mlo = 0, mhi = 1;
        if (mhi - mlo < 1e-12 * (fabs(mhi) + 1)) mlo -= 0.5 * (fabs(mlo) + 1e-3), mhi += 0.5 * (fabs(mhi) + 1e-3);
        mf.ystep = nice_step(mhi - mlo, 5);
        mf.ymin = floor(mlo / mf.ystep) * mf.ystep, mf.ymax = ceil(mhi / mf.ystep) * mf.ystep;
    }
    ticks lt, mt;
    log_ticks(lf.ymin, lf.ymax, &lt);
    linear_ticks(&mf, &mt);
    const char *lnames[16], *mnames[16];
    uint32_t lcol[16], mcol[16];
    for (int k = 0; k < nlosses; k++) lnames[k] = losses[k].name, lcol[k] = series_colours[k % N_COLOURS];
    for (int k = 0; k < nmetrics; k++) /* the metrics' colours follow the losses', none shared */
        mnames[k] = metrics[k].name, mcol[k] = series_colours[(nlosses + k) % N_COLOURS];
    int lw = legend_width(nlosses, lnames), mw = legend_width(nmetrics, mnames), right = lw > mw ? lw : mw;
    if (right > width / 2) right = width / 2;
    int left = 16 + (ticks_width(&lt) > ticks_width(&mt) ? ticks_width(&lt) : ticks_width(&mt));
    int top = title ? 38 : 20, bottom = height - (xlabel ? 34 : 22), gap = 30;
    int ph = (bottom - top - gap) / 2;
    lf.x0 = mf.x0 = left, lf.x1 = mf.x1 = width - 14 - right;
    lf.y0 = top, lf.y1 = top + ph, mf.y0 = lf.y1 + gap, mf.y1 = bottom;
    lf.xmin = mf.xmin = 0.5, lf.xmax = mf.xmax = (nmax > 1 ? nmax : 1) + 0.5;
    lf.xstep = mf.xstep = fmax(1, nice_step(nmax > 1 ? nmax : 1, 8));
    kx_canvas *c = kx_canvas_new(height, width, 255, 255, 255);
    if (!c) return kiln_last_status();
    if (title) kx_canvas_text(c, (width - kx_canvas_text_width(title, 2)) / 2, 5, title, 0x202020, 2);
    if (xlabel) kx_canvas_text(c, (mf.x0 + mf.x1 - kx_canvas_text_width(xlabel, 1)) / 2, height - 12, xlabel, 0x202020, 1);
    draw_panel(c, &lf, &lt, false, "LOSS (LOG SCALE)");
    draw_panel(c, &mf, &mt, true, "METRICS");
    draw_series(c, &lf, nlosses, losses, lcol, true);
    draw_series(c, &mf, nmetrics, metrics, mcol, false);
    draw_legend_marked(c, width - 6, lf.y0, nlosses, lnames, lcol, true);
    draw_legend_marked(c, width - 6, mf.y0, nmetrics, mnames, mcol, true);
    st = kx_canvas_save_png(c, path);
    kx_canvas_free(c);
    return st;
}

kiln_status kx_plot_spectrum_png(const char *path, const char *title, const double *eigenvalues, int n, int width,
                                 int height) {
    const char *fn = "kx_plot_spectrum_png";
    kiln_status st = check_size(fn, path, width, height);
    if (st) return st;
    if (n < 1 || !eigenvalues)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d eigenvalues for '%s'; give at least one", fn, n,
                              path);
    double total = 0;
    for (int i = 0; i < n; i++)
        if (eigenvalues[i] > 0) total += eigenvalues[i]; /* tiny negative values are rounding, not variance */
    if (!(total > 0) || !isfinite(total))
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT,
                              "%s: the eigenvalues for '%s' have no positive finite sum (all zero, negative or NaN?)", fn,
                              path);
    frame f = {0};
    f.ymin = 0, f.ymax = 1, f.ystep = 0.2;
    f.xmin = 0.5, f.xmax = n + 0.5;
    f.xstep = fmax(1, nice_step(n, 8));
    kx_canvas *c = kx_canvas_new(height, width, 255, 255, 255);
    if (!c) return kiln_last_status();
    draw_axes(c, &f, title, "COMPONENT", 0);
    /* Dashed guides at 90% and 99% of the variance. */
    for (int g = 0; g < 2; g++) {
        int y = px_y(&f, g ? 0.99 : 0.9);
        for (int x = f.x0; x < f.x1; x += 6) kx_canvas_line(c, x, y, x + 2 < f.x1 ? x + 2 : f.x1, y, 0x909090);
        kx_canvas_text(c, f.x1 - 22, y + 3, g ? "99%" : "90%", 0x707070, 1);
    }
    int bw = (f.x1 - f.x0) / n - 1;
    if (bw < 1) bw = 1;
    if (bw > 40) bw = 40;
    double cum = 0;
    int px = 0, py = 0;
    for (int i = 0; i < n; i++) {
        double share = eigenvalues[i] > 0 ? eigenvalues[i] / total : 0;
        int x = px_x(&f, i + 1), y = px_y(&f, share);
        kx_canvas_fill_rect(c, x - bw / 2, y, bw, f.y1 - y, series_colours[0]);
        cum += share;
        int cy = px_y(&f, cum);
        if (i) thick_line(c, px, py, x, cy, series_colours[1]);
        if (n <= 60) kx_canvas_fill_rect(c, x - 2, cy - 2, 5, 5, series_colours[1]);
        px = x, py = cy;
    }
    const char *names[2] = {"SHARE OF VARIANCE", "CUMULATIVE"};
    uint32_t colours[2] = {series_colours[0], series_colours[1]};
    draw_legend(c, f.x1 - 4, px_y(&f, 0.75), 2, names, colours); /* below the guides and the plateau */
    st = kx_canvas_save_png(c, path);
    kx_canvas_free(c);
    return st;
}

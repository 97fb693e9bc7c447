/* What the examples print while they work and when they finish: a progress bar redrawn
 * in place on a terminal (plain periodic lines when piped or logged), and the final
 * result line as one JSON object with correct string escaping. */
#include "kx.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double kx_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- progress -------------------------------------------------------------------------- */

kiln_status kx_error_prefix(const char *fmt, ...) {
    kiln_status st = kiln_last_status();
    if (st == KILN_STATUS_OK) return st;
    char prefix[256], *msg = strdup(kiln_last_error());
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (!msg) return st; /* out of memory: the message stays as it was */
    kiln_clear_error();
    kiln_set_error(st, "%s: %s", prefix, msg);
    free(msg);
    return st;
}

kiln_status kx_check_loss(double loss, int epoch, int64_t step, int64_t steps, double lr) {
    if (isfinite(loss)) return KILN_STATUS_OK;
    return kiln_set_error(KILN_STATUS_ANOMALY,
                          "the training loss became %s at epoch %d, step %lld of %lld: training diverged (lower --lr, "
                          "now %g)",
                          isnan(loss) ? "NaN" : loss > 0 ? "+Inf" : "-Inf", epoch, (long long)step, (long long)steps, lr);
}

void kx_progress_init(kx_progress *p, FILE *out, kx_progress_mode mode, const char *label, int64_t total) {
    memset(p, 0, sizeof *p);
    p->out = out ? out : stderr;
    if (mode == KX_PROGRESS_AUTO) mode = isatty(fileno(p->out)) ? KX_PROGRESS_BAR : KX_PROGRESS_LINES;
    p->mode = mode;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total > 0 ? total : 0;
    p->t_start = kx_now_seconds();
    p->t_last_draw = -1;
    p->last_decile = 0;
    p->loss = NAN;
}

static void format_duration(char *buf, size_t n, double s) {
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void kx_progress_set_images(kx_progress *p, int64_t images_per_step) {
    if (p) p->images_per_step = images_per_step > 0 ? images_per_step : 0;
}

/* "12/500 loss 0.3456 | 330 images/s | ETA 0:12" (steps/s when the batch is not known).
 * The ETA is the steps left at the mean rate so far. */
static void format_stats(const kx_progress *p, char *buf, size_t n, double now) {
    double el = now - p->t_start, rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], loss[32] = "", speed[48];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - p->done) / rate : NAN);
    if (isfinite(p->loss)) snprintf(loss, sizeof loss, " loss %.4f", p->loss);
    double ips = rate * (double)p->images_per_step;
    if (p->images_per_step > 0) snprintf(speed, sizeof speed, ips >= 100 ? "%.0f images/s" : "%.1f images/s", ips);
    else snprintf(speed, sizeof speed, "%.1f steps/s", rate);
    snprintf(buf, n, "%lld/%lld%s | %s | ETA %s", (long long)p->done, (long long)p->total, loss, speed, eta);
}

static void draw_bar(kx_progress *p, double now) {
    enum { WIDTH = 24 };
    char bar[WIDTH + 1], stats[160];
    int fill = p->total ? (int)((double)WIDTH * (double)p->done / (double)p->total) : 0;
    for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = '\0';
    format_stats(p, stats, sizeof stats, now);
    /* \r returns to the line start, \033[K clears what a longer previous line left. */
    fprintf(p->out, "\r%s [%s] %s\033[K", p->label, bar, stats);
    fflush(p->out);
    p->t_last_draw = now;
}

void kx_progress_update(kx_progress *p, int64_t done, double loss) {
    if (!p || p->mode == KX_PROGRESS_QUIET) return;
    p->done = done < 0 ? 0 : (p->total && done > p->total ? p->total : done);
    p->loss = loss;
    double now = kx_now_seconds();
    if (p->mode == KX_PROGRESS_BAR) {
        if (p->t_last_draw < 0 || now - p->t_last_draw >= 0.1 || p->done == p->total) draw_bar(p, now);
        return;
    }
    /* Lines: one each time another tenth of the work is done. */
    int decile = p->total ? (int)(10 * p->done / p->total) : 0;
    if (decile > p->last_decile && p->done < p->total) {
        char stats[160];
        format_stats(p, stats, sizeof stats, now);
        fprintf(p->out, "%s %3d%% %s\n", p->label, 10 * decile, stats);
        fflush(p->out);
        p->last_decile = decile;
    }
}

void kx_progress_finish(kx_progress *p) {
    if (!p || p->mode == KX_PROGRESS_QUIET) return;
    double now = kx_now_seconds();
    char took[32], stats[160];
    format_duration(took, sizeof took, now - p->t_start);
    if (p->mode == KX_PROGRESS_BAR) {
        draw_bar(p, now);
        fprintf(p->out, " (%s)\n", took);
    } else {
        format_stats(p, stats, sizeof stats, now);
        fprintf(p->out, "%s done %s in %s\n", p->label, stats, took);
    }
    fflush(p->out);
}

/* ---- JSON -------------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static int utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    int n;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
    else return 0;
    unsigned cp = c & (0x3F >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0; /* also stops at the NUL */
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0; /* overlong, too big, surrogate */
    return n;
}

size_t kx_json_escape(const char *s, char *out, size_t n) {
    size_t len = 0;
#define EMIT(ch)                                  \
    do {                                          \
        if (out && len + 1 < n) out[len] = (ch);  \
        len++;                                    \
    } while (0)
    EMIT('"');
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned char c = *p;
        const char *esc = NULL;
        char ubuf[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
                esc = ubuf;
            }
        }
        if (esc) {
            for (const char *e = esc; *e; e++) EMIT(*e);
            p++;
            continue;
        }
        int k = utf8_len(p);
        if (k == 0) { /* not UTF-8: the replacement character keeps the output valid JSON */
            for (const char *e = "\\ufffd"; *e; e++) EMIT(*e);
            p++;
            continue;
        }
        for (int i = 0; i < k; i++) EMIT((char)p[i]);
        p += k;
    }
    EMIT('"');
#undef EMIT
    if (out && n) out[len < n ? len : n - 1] = '\0';
    return len;
}

static void put_raw(kx_json *j, const char *s, size_t n) {
    if (j->failed) return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 256;
        while (cap < j->len + n + 1) cap *= 2;
        char *b = realloc(j->buf, cap);
        if (!b) {
            j->failed = true;
            return;
        }
        j->buf = b, j->cap = cap;
    }
    memcpy(j->buf + j->len, s, n);
    j->len += n;
    j->buf[j->len] = '\0';
}
static void put_str(kx_json *j, const char *s) { put_raw(j, s, strlen(s)); }

static void put_escaped(kx_json *j, const char *s) {
    size_t need = kx_json_escape(s, NULL, 0);
    char small[256], *b = need < sizeof small ? small : malloc(need + 1);
    if (!b) {
        j->failed = true;
        return;
    }
    kx_json_escape(s, b, need + 1);
    put_raw(j, b, need);
    if (b != small) free(b);
}

static void put_key(kx_json *j, const char *key) {
    if (j->need_comma) put_str(j, ", ");
    put_escaped(j, key);
    put_str(j, ": ");
    j->need_comma = true;
}

/* The shortest of %.15g..%.17g that reads back as the same double. */
static void put_double(kx_json *j, double v) {
    if (!isfinite(v)) {
        put_str(j, "null");
        return;
    }
    char b[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, v);
        if (strtod(b, NULL) == v) break;
    }
    put_str(j, b);
}

void kx_json_begin(kx_json *j) {
    memset(j, 0, sizeof *j);
    put_str(j, "{");
}

void kx_json_string(kx_json *j, const char *key, const char *value) {
    put_key(j, key);
    if (value)
        put_escaped(j, value);
    else
        put_str(j, "null");
}

void kx_json_number(kx_json *j, const char *key, double value) {
    put_key(j, key);
    put_double(j, value);
}

void kx_json_int(kx_json *j, const char *key, int64_t value) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)value);
    put_key(j, key);
    put_str(j, b);
}

void kx_json_bool(kx_json *j, const char *key, bool value) {
    put_key(j, key);
    put_str(j, value ? "true" : "false");
}

void kx_json_numbers(kx_json *j, const char *key, const double *values, int n) {
    put_key(j, key);
    put_str(j, "[");
    for (int i = 0; i < n; i++) {
        if (i) put_str(j, ", ");
        put_double(j, values[i]);
    }
    put_str(j, "]");
}

const char *kx_json_end(kx_json *j) {
    if (!j->closed) {
        put_str(j, "}");
        j->closed = true;
    }
    return j->failed ? NULL : j->buf;
}

void kx_json_print(kx_json *j, FILE *f) {
    const char *s = kx_json_end(j);
    if (s) {
        fprintf(f, "%s\n", s);
        fflush(f);
    } else {
        fprintf(f, "{\"error\": \"out of memory building the result line\"}\n");
    }
    kx_json_free(j);
}

void kx_json_free(kx_json *j) {
    free(j->buf);
    memset(j, 0, sizeof *j);
}

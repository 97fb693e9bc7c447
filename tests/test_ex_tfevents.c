/* The example support library's training logs: TensorBoard event files read back by a
 * decoder written here from the formats' specifications (TFRecord framing with masked
 * CRC-32C, the protobuf wire format of tensorflow.Event), so the writer is checked
 * against the format rather than against itself; and OUT/steps.csv / OUT/epochs.csv,
 * including a resumed run keeping the rows of the epochs it continues. */
#include "support/kiln_test.h"
#include "support/kt_run.h"

#include <kx.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

TestSuite(ex_tfevents, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* ---- an independent reader ---------------------------------------------------------- */

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Bitwise CRC-32C, no table: a second implementation to check the writer's with. */
static uint32_t crc32c_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
    }
    return ~c;
}
static uint32_t masked(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

typedef struct {
    double wall_time;
    int64_t step;
    char file_version[32];
    char tag[64];
    float value;
    int nvalues;
} event;

static uint64_t varint(const uint8_t **p, const uint8_t *end) {
    uint64_t v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    cr_assert_fail("truncated varint");
    return 0;
}

/* Walks one message's fields, calling back for each (field, wire type, value/bytes). */
typedef void (*field_fn)(void *ctx, int field, int wire, uint64_t v, const uint8_t *b, size_t n);
static void walk(const uint8_t *p, const uint8_t *end, field_fn fn, void *ctx) {
    while (p < end) {
        uint64_t key = varint(&p, end);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        switch (wire) {
        case 0: fn(ctx, field, wire, varint(&p, end), NULL, 0); break;
        case 1: cr_assert(end - p >= 8); fn(ctx, field, wire, le(p, 8), NULL, 0); p += 8; break;
        case 5: cr_assert(end - p >= 4); fn(ctx, field, wire, le(p, 4), NULL, 0); p += 4; break;
        case 2: {
            uint64_t n = varint(&p, end);
            cr_assert(n <= (uint64_t)(end - p), "length %llu past the end", (unsigned long long)n);
            fn(ctx, field, wire, 0, p, n);
            p += n;
            break;
        }
        default: cr_assert_fail("wire type %d", wire);
        }
    }
}

static void value_field(void *ctx, int field, int wire, uint64_t v, const uint8_t *b, size_t n) {
    event *e = ctx;
    if (field == 1 && wire == 2) snprintf(e->tag, sizeof e->tag, "%.*s", (int)n, (const char *)b);
    if (field == 2 && wire == 5) {
        uint32_t u = (uint32_t)v;
        memcpy(&e->value, &u, 4);
    }
}
static void summary_field(void *ctx, int field, int wire, uint64_t v, const uint8_t *b, size_t n) {
    (void)v;
    event *e = ctx;
    cr_assert(field == 1 && wire == 2, "Summary field %d wire %d", field, wire);
    e->nvalues++;
    walk(b, b + n, value_field, e);
}
static void event_field(void *ctx, int field, int wire, uint64_t v, const uint8_t *b, size_t n) {
    event *e = ctx;
    if (field == 1 && wire == 1) memcpy(&e->wall_time, &v, 8);
    else if (field == 2 && wire == 0) e->step = (int64_t)v;
    else if (field == 3 && wire == 2) snprintf(e->file_version, sizeof e->file_version, "%.*s", (int)n, (const char *)b);
    else if (field == 5 && wire == 2) walk(b, b + n, summary_field, e);
    else cr_assert_fail("unexpected Event field %d (wire %d)", field, wire);
}

/* Reads every record of path, checking both CRCs of each; returns the events (malloc'd). */
static event *read_events(const char *path, int *count) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)size + 1);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    event *ev = NULL;
    int n = 0;
    for (long off = 0; off < size;) {
        cr_assert(size - off >= 16, "a truncated record at %ld", off);
        uint64_t len = le(buf + off, 8);
        cr_assert_eq((uint32_t)le(buf + off + 8, 4), masked(crc32c_bitwise(buf + off, 8)), "length CRC at %ld", off);
        cr_assert(len <= (uint64_t)(size - off - 16), "record length %llu past the end", (unsigned long long)len);
        const uint8_t *data = buf + off + 12;
        cr_assert_eq((uint32_t)le(data + len, 4), masked(crc32c_bitwise(data, len)), "data CRC at %ld", off);
        ev = realloc(ev, sizeof *ev * (size_t)(n + 1));
        memset(&ev[n], 0, sizeof ev[n]);
        walk(data, data + len, event_field, &ev[n]);
        n++;
        off += 16 + (long)len;
    }
    free(buf);
    *count = n;
    return ev;
}

/* The one events file in dir (malloc'd path). */
static char *only_events_file(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert(d, "no directory %s", dir);
    char *found = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, "events.out.tfevents.", 20) == 0) {
            n++;
            free(found);
            found = malloc(strlen(dir) + strlen(e->d_name) + 2);
            sprintf(found, "%s/%s", dir, e->d_name);
        }
    closedir(d);
    cr_assert_eq(n, 1, "%d event files in %s", n, dir);
    return found;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "cannot open %s", path);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* ---- tests ----------------------------------------------------------------------------- */

KT_TEST(ex_tfevents, crc32c_matches_the_standard_check_values) {
    /* RFC 3720's check value, and the bitwise reference on assorted lengths */
    cr_expect_eq(kx_crc32c("123456789", 9), 0xE3069283u);
    cr_expect_eq(kx_crc32c("", 0), 0u);
    uint8_t zeros[32] = {0};
    cr_expect_eq(kx_crc32c(zeros, 32), 0x8A9136AAu); /* RFC 3720 B.4: 32 bytes of zeros */
    uint8_t b[300];
    for (int i = 0; i < 300; i++) b[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= 300; n += 7) cr_expect_eq(kx_crc32c(b, n), crc32c_bitwise(b, n), "length %zu", n);
    cr_expect_eq(kx_tfevents_masked_crc(0xE3069283u), masked(0xE3069283u));
    cr_expect_eq(kx_tfevents_masked_crc(0), 0xa282ead8u);
}

KT_TEST(ex_tfevents, record_framing) {
    const uint8_t payload[5] = {1, 2, 3, 4, 5};
    uint8_t rec[64];
    cr_assert_eq(kx_tfevents_record(payload, 5, rec, sizeof rec), 21u);
    cr_expect_eq(le(rec, 8), 5u);
    cr_expect_eq((uint32_t)le(rec + 8, 4), masked(crc32c_bitwise(rec, 8)));
    cr_expect(memcmp(rec + 12, payload, 5) == 0);
    cr_expect_eq((uint32_t)le(rec + 17, 4), masked(crc32c_bitwise(payload, 5)));
    cr_expect_eq(kx_tfevents_record(payload, 5, rec, 20), 0u, "a record that does not fit is refused");
}

KT_TEST(ex_tfevents, scalars_round_trip) {
    char *d = kt_run_dir("tfevents"), dir[512];
    snprintf(dir, sizeof dir, "%s/logs/run1", d); /* made with its parents */
    kx_tfevents *w = kx_tfevents_open(dir);
    cr_assert(w, "%s", kiln_last_error());
    const double values[4] = {0.6931, 1e-7, -3.5, 12345.678};
    const int64_t steps[4] = {1, 2, 300, 5000000000LL};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(kx_tfevents_scalar(w, i % 2 ? "epoch/heldout_iou" : "train/loss", steps[i], values[i]),
                     KILN_STATUS_OK, "%s", kiln_last_error());
    char path[1024];
    snprintf(path, sizeof path, "%s", kx_tfevents_path(w));
    cr_expect(strstr(path, "/events.out.tfevents."), "file name %s", path);
    cr_assert_eq(kx_tfevents_close(w), KILN_STATUS_OK);
    /* a second writer in the same second gets a file of its own */
    kx_tfevents *w2 = kx_tfevents_open(dir);
    cr_assert(w2);
    cr_expect_str_neq(kx_tfevents_path(w2), path);
    kx_tfevents_close(w2);

    int n;
    event *ev = read_events(path, &n);
    cr_assert_eq(n, 5, "%d events: the file version and 4 scalars", n);
    cr_expect_str_eq(ev[0].file_version, "brain.Event:2");
    cr_expect_eq(ev[0].nvalues, 0);
    double now = (double)time(NULL);
    for (int i = 0; i < 5; i++) cr_expect(fabs(ev[i].wall_time - now) < 600, "wall time %f", ev[i].wall_time);
    for (int i = 0; i < 4; i++) {
        const event *e = &ev[i + 1];
        cr_expect_eq(e->nvalues, 1);
        cr_expect_str_eq(e->tag, i % 2 ? "epoch/heldout_iou" : "train/loss");
        cr_expect_eq(e->step, steps[i]);
        cr_expect_eq(e->value, (float)values[i], "value %d: %g, wrote %g", i, e->value, values[i]);
        cr_expect(!e->file_version[0]);
    }
    free(ev);
    kt_run_dir_remove(d);
}

KT_TEST(ex_tfevents, bad_arguments_are_errors) {
    cr_expect_null(kx_tfevents_open(NULL));
    cr_expect_eq(kiln_last_status(), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
    cr_expect_null(kx_tfevents_open("/proc/no/such/dir"));
    cr_expect_neq(kiln_last_status(), KILN_STATUS_OK);
    cr_expect(strstr(kiln_last_error(), "--log-dir"), "%s", kiln_last_error());
    kiln_clear_error();
    cr_expect_eq(kx_tfevents_scalar(NULL, "x", 0, 1), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
    cr_expect_eq(kx_tfevents_close(NULL), KILN_STATUS_OK);
}

KT_TEST(ex_tfevents, train_log_writes_csv_and_events) {
    char *d = kt_run_dir("trainlog"), tb[512], path[600];
    snprintf(tb, sizeof tb, "%s/tb", d);
    const char *const names[2] = {"heldout_iou", "heldout_dice"};
    kx_train_log *l = kx_train_log_open(d, tb, 2, names, 0);
    cr_assert(l, "%s", kiln_last_error());
    for (int e = 1; e <= 2; e++) {
        for (int s = 1; s <= 2; s++)
            cr_assert_eq(kx_train_log_step(l, e, (e - 1) * 2 + s, 0.5 / s, 0.01, 100.0 * s), KILN_STATUS_OK);
        cr_assert_eq(kx_train_log_epoch(l, e, 0.25 * e, NAN, (double[]){0.5, 2.0 / 3}), KILN_STATUS_OK);
    }
    cr_expect_not_null(kx_train_log_events_path(l));
    cr_assert_eq(kx_train_log_close(l), KILN_STATUS_OK);
    snprintf(path, sizeof path, "%s/steps.csv", d);
    cr_expect_str_eq(slurp(path), "epoch,step,loss,lr,images_per_s\n"
                                  "1,1,0.5,0.01,100\n1,2,0.25,0.01,200\n2,3,0.5,0.01,100\n2,4,0.25,0.01,200\n");
    snprintf(path, sizeof path, "%s/epochs.csv", d);
    /* NaN (no held-out loss) is an empty cell, which pandas reads as NaN */
    cr_expect_str_eq(slurp(path), "epoch,train_loss,heldout_loss,heldout_iou,heldout_dice\n"
                                  "1,0.25,,0.5,0.666666667\n2,0.5,,0.5,0.666666667\n");
    char *ef = only_events_file(tb);
    int n;
    event *ev = read_events(ef, &n);
    cr_assert_eq(n, 1 + 2 * (2 * 3) + 2 * 4, "%d events", n); /* version, 3 a step, 4 an epoch */
    cr_expect_str_eq(ev[1].tag, "train/loss");
    cr_expect_eq(ev[1].step, 1);
    cr_expect_str_eq(ev[7].tag, "epoch/train_loss");
    cr_expect_eq(ev[7].step, 1);
    cr_expect_eq(ev[7].value, 0.25f);
    cr_expect_str_eq(ev[10].tag, "epoch/heldout_dice");
    cr_expect_eq(ev[10].value, (float)(2.0 / 3));
    free(ev);
    free(ef);

    /* A run resumed after epoch 1 keeps epoch 1's rows and drops epoch 2's. */
    l = kx_train_log_open(d, NULL, 2, names, 1);
    cr_assert(l, "%s", kiln_last_error());
    cr_expect_null(kx_train_log_events_path(l));
    cr_assert_eq(kx_train_log_step(l, 2, 3, 0.125, 0.005, 50), KILN_STATUS_OK);
    cr_assert_eq(kx_train_log_close(l), KILN_STATUS_OK);
    snprintf(path, sizeof path, "%s/steps.csv", d);
    cr_expect_str_eq(slurp(path), "epoch,step,loss,lr,images_per_s\n1,1,0.5,0.01,100\n1,2,0.25,0.01,200\n"
                                  "2,3,0.125,0.005,50\n");
    snprintf(path, sizeof path, "%s/epochs.csv", d);
    cr_expect_str_eq(slurp(path), "epoch,train_loss,heldout_loss,heldout_iou,heldout_dice\n1,0.25,,0.5,0.666666667\n");
    kt_run_dir_remove(d);
}

/* TensorBoard event files written by kiln itself: the tfevents record format (TFRecord
 * framing with masked CRC-32C) around serialized tensorflow.Event messages holding
 * scalar summaries, which TensorBoard's EventAccumulator reads.
 *
 * The protobuf encoding is done by hand here rather than with protobuf-c or nanopb: the
 * writer needs five fields of three messages (Event.wall_time, .step, .file_version,
 * .summary; Summary.value; Value.tag, .simple_value), each a varint, a fixed64, a fixed32
 * or a length-delimited field, which is a few dozen lines, against a code generator, a
 * .proto copy and a run-time dependency for every user of the examples. */
#include "kx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct kx_tfevents {
    FILE *f;
    char path[4096];
    kiln_status st; /* the first write error */
};

/* ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one table, built once ---- */

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t kx_crc32c(const void *data, size_t n) {
    if (!crc_ready) crc_init(); /* idempotent: two threads racing write the same table */
    const uint8_t *p = data;
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t kx_tfevents_masked_crc(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(v >> (8 * i));
}

size_t kx_tfevents_record(const uint8_t *payload, size_t n, uint8_t *out, size_t cap) {
    if (!out || cap < n + 16 || (!payload && n)) return 0;
    put_le(out, n, 8);
    put_le(out + 8, kx_tfevents_masked_crc(kx_crc32c(out, 8)), 4);
    if (n) memcpy(out + 12, payload, n);
    put_le(out + 12 + n, kx_tfevents_masked_crc(kx_crc32c(payload, n)), 4);
    return n + 16;
}

/* ---- the protobuf wire format, as much as an Event needs ---------------------------------- */

typedef struct {
    uint8_t *b;
    size_t len, cap;
    bool overflow;
} pbuf;

static void pb_byte(pbuf *p, uint8_t v) {
    if (p->len < p->cap) p->b[p->len] = v;
    else p->overflow = true;
    p->len++;
}
static void pb_varint(pbuf *p, uint64_t v) {
    do {
        pb_byte(p, (uint8_t)((v & 0x7F) | (v > 0x7F ? 0x80 : 0)));
        v >>= 7;
    } while (v);
}
/* key = field number << 3 | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) */
static void pb_key(pbuf *p, int field, int wire) { pb_varint(p, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_fixed(pbuf *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) pb_byte(p, (uint8_t)(v >> (8 * i)));
}
static void pb_bytes(pbuf *p, int field, const void *data, size_t n) {
    pb_key(p, field, 2);
    pb_varint(p, n);
    for (size_t i = 0; i < n; i++) pb_byte(p, ((const uint8_t *)data)[i]);
}
static void pb_double(pbuf *p, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    pb_key(p, field, 1);
    pb_fixed(p, u, 8);
}
static void pb_float(pbuf *p, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    pb_key(p, field, 5);
    pb_fixed(p, u, 4);
}

static double wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Frames and writes one serialized Event. */
static kiln_status write_event(kx_tfevents *w, const uint8_t *ev, size_t n) {
    if (w->st) return w->st;
    uint8_t small[512], *rec = n + 16 <= sizeof small ? small : malloc(n + 16);
    if (!rec) return w->st = kiln_set_error(KILN_STATUS_OOM, "kx_tfevents: out of memory for a %zu-byte event", n);
    size_t k = kx_tfevents_record(ev, n, rec, n + 16);
    if (fwrite(rec, 1, k, w->f) != k)
        w->st = kiln_set_error(KILN_STATUS_IO, "kx_tfevents: writing %s: %s", w->path, strerror(errno));
    if (rec != small) free(rec);
    return w->st;
}

kx_tfevents *kx_tfevents_open(const char *dir) {
    if (!dir || !*dir) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_tfevents_open: no directory"), NULL;
    if (kx_make_dirs(dir) != KILN_STATUS_OK) return kx_error_prefix("--log-dir %s", dir), NULL;
    kx_tfevents *w = calloc(1, sizeof *w);
    if (!w) return kiln_set_error(KILN_STATUS_OOM, "kx_tfevents_open: out of memory"), NULL;
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0 || !host[0]) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *h = host; *h; h++)
        if (*h == '/') *h = '_';
    long secs = (long)time(NULL);
    /* O_EXCL: a second run in the same second and directory gets its own file */
    int fd = -1;
    for (int k = 0; k < 100 && fd < 0; k++) {
        char name[512];
        if (k) snprintf(name, sizeof name, "events.out.tfevents.%ld.%s.%d", secs, host, k);
        else snprintf(name, sizeof name, "events.out.tfevents.%ld.%s", secs, host);
        if (kx_path_join(w->path, sizeof w->path, dir, name) != KILN_STATUS_OK) break;
        fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || !(w->f = fdopen(fd, "wb"))) {
        if (kiln_last_status() == KILN_STATUS_OK)
            kiln_set_error(KILN_STATUS_IO, "--log-dir: cannot create %s: %s", w->path, strerror(errno));
        if (fd >= 0) close(fd);
        free(w);
        return NULL;
    }
    uint8_t ev[64];
    pbuf p = {ev, 0, sizeof ev, false};
    pb_double(&p, 1, wall_time());
    pb_bytes(&p, 3, "brain.Event:2", 13); /* Event.file_version */
    if (write_event(w, ev, p.len) != KILN_STATUS_OK || kx_tfevents_flush(w) != KILN_STATUS_OK) {
        fclose(w->f);
        free(w);
        return NULL;
    }
    return w;
}

kiln_status kx_tfevents_scalar(kx_tfevents *w, const char *tag, int64_t step, double value) {
    if (!w || !tag) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_tfevents_scalar: writer or tag is NULL");
    size_t tn = strlen(tag);
    if (tn > 200) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_tfevents_scalar: tag of %zu bytes", tn);
    /* Value{tag = 1, simple_value = 2} inside Summary{value = 1} inside Event{summary = 5} */
    uint8_t val[256], sum[272], ev[320];
    pbuf v = {val, 0, sizeof val, false}, s = {sum, 0, sizeof sum, false}, e = {ev, 0, sizeof ev, false};
    pb_bytes(&v, 1, tag, tn);
    pb_float(&v, 2, (float)value);
    pb_bytes(&s, 1, val, v.len);
    pb_double(&e, 1, wall_time());
    pb_key(&e, 2, 0);
    pb_varint(&e, (uint64_t)step); /* int64: a negative step takes ten bytes, as protobuf has it */
    pb_bytes(&e, 5, sum, s.len);
    if (v.overflow || s.overflow || e.overflow)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_tfevents_scalar: event for '%s' too large", tag);
    return write_event(w, ev, e.len);
}

kiln_status kx_tfevents_flush(kx_tfevents *w) {
    if (!w) return KILN_STATUS_OK;
    if (!w->st && fflush(w->f) != 0)
        w->st = kiln_set_error(KILN_STATUS_IO, "kx_tfevents: writing %s: %s", w->path, strerror(errno));
    return w->st;
}

const char *kx_tfevents_path(const kx_tfevents *w) { return w ? w->path : NULL; }

kiln_status kx_tfevents_close(kx_tfevents *w) {
    if (!w) return KILN_STATUS_OK;
    kiln_status st = kx_tfevents_flush(w);
    if (fclose(w->f) != 0 && !st)
        st = kiln_set_error(KILN_STATUS_IO, "kx_tfevents: closing %s: %s", w->path, strerror(errno));
    free(w);
    return st;
}

/* See kt_run.h. */
#include "kt_run.h"

#include "kiln_test.h"
#include "kx.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static void read_file(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = '\0';
    if (f) fclose(f);
}

/* Runs the program with args in dir (a fresh directory), capturing both streams. */
run_result *kt_run(const char *bin, const char *dir, const char *args) {
    if (!bin) cr_skip_test("the examples are not built (KILN_BUILD_EXAMPLES=OFF)");
    run_result *r = calloc(1, sizeof *r);
    cr_assert(r);
    char cmd[4096], o[1024], e[1024];
    snprintf(o, sizeof o, "%s/stdout.txt", dir);
    snprintf(e, sizeof e, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >'%s' 2>'%s'", dir, bin, args, o, e);
    int ws = system(cmd);
    r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    read_file(o, r->out, sizeof r->out);
    read_file(e, r->err, sizeof r->err);
    size_t n = strlen(r->out);
    while (n && r->out[n - 1] == '\n') r->out[--n] = '\0';
    const char *last = strrchr(r->out, '\n');
    r->json = json_loads(last ? last + 1 : r->out, 0, NULL);
    return r;
}

run_result *kt_run_ok(const char *bin, const char *dir, const char *args) {
    run_result *r = kt_run(bin, dir, args);
    cr_assert_eq(r->status, 0, "exit %d; stderr:\n%s", r->status, r->err);
    return r;
}

run_result *kt_run_refused(const char *bin, const char *dir, const char *args, const char *prefix, const char *says) {
    run_result *r = kt_run(bin, dir, args);
    cr_expect(r->status != 0, "'%s' exited 0", args);
    cr_expect(strstr(r->err, prefix) && strstr(r->err, says), "'%s': stderr does not say '%s':\n%s", args, says,
              r->err);
    return r;
}

void kt_run_free(run_result *r) {
    json_decref(r->json);
    free(r);
}

char *kt_run_dir(const char *tag) {
    char buf[256];
    snprintf(buf, sizeof buf, "/tmp/kiln_%s_XXXXXX", tag);
    char *d = strdup(buf);
    cr_assert(d && mkdtemp(d), "mkdtemp failed");
    return d;
}

void kt_run_dir_remove(char *d) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_expect_eq(system(cmd), 0);
    free(d);
}

void kt_run_touch(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot create %s", path);
    fclose(f);
}

/* A per-epoch array of n finite numbers (within [lo, hi]). */
void kt_expect_series(json_t *j, const char *key, size_t n, double lo, double hi) {
    json_t *a = json_object_get(j, key);
    cr_assert(json_is_array(a), "'%s' is missing or not an array", key);
    cr_expect_eq(json_array_size(a), n, "'%s' has %zu values, not %zu", key, json_array_size(a), n);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        cr_expect(json_is_number(v), "%s[%zu] is not a finite number (null means NaN or Inf)", key, i);
        double x = json_number_value(v);
        cr_expect(x >= lo && x <= hi, "%s[%zu] = %g is outside [%g, %g]", key, i, x, lo, hi);
    }
}

double kt_number(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_number(v), "'%s' is missing or not a finite number", key);
    return json_number_value(v);
}

void kt_expect_png(const char *path, int channels, int w, int h) {
    uint8_t *px = NULL;
    int c, H, W;
    cr_assert_eq(kx_png_read_u8(path, 0, &px, &c, &H, &W), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, channels, "%s has %d channels, not %d", path, c, channels);
    if (w > 0) cr_expect(W == w && H == h, "%s is %dx%d, not %dx%d", path, W, H, w, h);
    free(px);
}


void kt_write_zero_png(const char *path, uint32_t w, uint32_t h) {
    size_t cap = 1 << 20, len = 0;
    uint8_t *idat = malloc(cap), *row = calloc(w + 1, 1);
    z_stream z = {0};
    cr_assert(idat && row && deflateInit2(&z, 9, Z_DEFLATED, 15, 9, Z_RLE) == Z_OK);
    for (uint32_t y = 0; y < h; y++) {
        z.next_in = row, z.avail_in = w + 1;
        do {
            if (cap - len < 65536) cr_assert((idat = realloc(idat, cap *= 2)));
            z.next_out = idat + len, z.avail_out = (uInt)(cap - len);
            deflate(&z, y + 1 == h ? Z_FINISH : Z_NO_FLUSH);
            len = cap - z.avail_out;
        } while (z.avail_out == 0);
    }
    deflateEnd(&z);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h, 8, 0, 0, 0, 0};
    fwrite(sig, 1, 8, f);
    const char *types[3] = {"IHDR", "IDAT", "IEND"};
    const uint8_t *data[3] = {ihdr, idat, NULL};
    uint32_t lens[3] = {13, (uint32_t)len, 0};
    for (int c = 0; c < 3; c++) { /* big-endian length, type, data, CRC of type and data */
        uint8_t be[4] = {(uint8_t)(lens[c] >> 24), (uint8_t)(lens[c] >> 16), (uint8_t)(lens[c] >> 8), (uint8_t)lens[c]};
        uLong crc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)types[c], 4);
        if (lens[c]) crc = crc32(crc, data[c], lens[c]);
        uint8_t cb[4] = {(uint8_t)(crc >> 24), (uint8_t)(crc >> 16), (uint8_t)(crc >> 8), (uint8_t)crc};
        fwrite(be, 1, 4, f), fwrite(types[c], 1, 4, f);
        if (lens[c]) fwrite(data[c], 1, lens[c], f);
        fwrite(cb, 1, 4, f);
    }
    fclose(f);
    free(idat);
    free(row);
}

long kt_peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

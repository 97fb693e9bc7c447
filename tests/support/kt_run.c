/* See kt_run.h. */
#include "kt_run.h"

#include "kiln_test.h"
#include "kiln_examples.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
    cr_assert_eq(kiln_png_read_u8(path, 0, &px, &c, &H, &W), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, channels, "%s has %d channels, not %d", path, c, channels);
    if (w > 0) cr_expect(W == w && H == h, "%s is %dx%d, not %dx%d", path, W, H, w, h);
    free(px);
}


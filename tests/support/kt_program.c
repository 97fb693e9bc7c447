/* Running the example programs from the tests and checking their JSON result lines. */
#include "kt_program.h"

#include <criterion/criterion.h>
#include <kx.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

void kt_program_run(const char *name, const char *args, kt_program_result *r) {
    memset(r, 0, sizeof *r);
    r->status = -1;
#ifndef KT_EXAMPLES_DIR
    cr_assert_fail("the example programs are not built (KILN_BUILD_EXAMPLES is OFF)");
#else
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s/%s' %s", KT_EXAMPLES_DIR, name, args);
    fflush(NULL);
    FILE *p = popen(cmd, "r");
    cr_assert(p != NULL, "cannot run %s", cmd);
    size_t len = 0, cap = 4096;
    r->out = malloc(cap);
    for (size_t got; (got = fread(r->out + len, 1, cap - len - 1, p)) > 0;) {
        len += got;
        if (cap - len < 2) r->out = realloc(r->out, cap *= 2);
    }
    r->out[len] = '\0';
    int ws = pclose(p);
    r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    /* the result is the last non-empty line */
    while (len > 0 && r->out[len - 1] == '\n') r->out[--len] = '\0';
    char *line = strrchr(r->out, '\n');
    line = line ? line + 1 : r->out;
    json_error_t err;
    r->json = json_loads(line, 0, &err);
    if (r->json && !json_is_object(r->json)) {
        json_decref(r->json);
        r->json = NULL;
    }
#endif
}

void kt_program_result_free(kt_program_result *r) {
    free(r->out);
    if (r->json) json_decref(r->json);
    memset(r, 0, sizeof *r);
}

void kt_program_run_data(const char *name, const char *data, const char *out, const char *args, kt_program_result *r) {
    char cmd[2048], dflt[600];
    if (!out) snprintf(dflt, sizeof dflt, "%s/out", data), out = dflt;
    snprintf(cmd, sizeof cmd, "--device cpu --data '%s' --out '%s' %s 2>&1", data, out, args);
    kt_program_run(name, cmd, r);
}

void kt_program_expect_errors(const char *name, const char *data, size_t n, const kt_case *cases) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: ", name);
    for (size_t i = 0; i < n; i++) {
        kt_program_result r;
        kt_program_run_data(name, data, NULL, cases[i].args, &r);
        cr_expect_eq(r.status, 2, "'%s' exited %d:\n%s", cases[i].args, r.status, r.out);
        cr_expect(strstr(r.out, prefix) && strstr(r.out, cases[i].says), "'%s' does not say '%s':\n%s",
                  cases[i].args, cases[i].says, r.out);
        cr_expect(!strstr(r.out, "Sanitizer"), "'%s':\n%s", cases[i].args, r.out);
        kt_program_result_free(&r);
    }
}

double kt_json_number(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    cr_assert(v != NULL, "JSON result has no \"%s\"", key);
    cr_assert(json_is_number(v), "JSON \"%s\" is not a number (null means NaN or Inf)", key);
    double x = json_number_value(v);
    cr_assert(isfinite(x), "JSON \"%s\" is %g", key, x);
    return x;
}

double kt_json_array(json_t *obj, const char *key, int n, double *out, int cap) {
    json_t *v = json_object_get(obj, key);
    cr_assert(v != NULL && json_is_array(v), "JSON result has no array \"%s\"", key);
    int len = (int)json_array_size(v);
    cr_assert(len > 0, "JSON \"%s\" is empty", key);
    if (n >= 0) cr_assert_eq(len, n, "JSON \"%s\" has %d values, expected %d", key, len, n);
    for (int i = 0; i < len; i++) {
        json_t *e = json_array_get(v, (size_t)i);
        cr_assert(json_is_number(e), "JSON \"%s\"[%d] is not a number (null means NaN or Inf)", key, i);
        if (out && i < cap) out[i] = json_number_value(e);
    }
    return json_number_value(json_array_get(v, 0));
}

void kt_json_png(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    cr_assert(v != NULL && json_is_string(v), "JSON result has no string \"%s\"", key);
    const char *path = json_string_value(v);
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "\"%s\": %s was not written", key, path);
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, 8, f);
    fclose(f);
    static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    cr_assert(got == 8 && memcmp(sig, png, 8) == 0, "\"%s\": %s is not a PNG", key, path);
}

void kt_json_weights(json_t *obj, const char *dir, int n) {
    json_t *v = json_object_get(obj, "weights");
    cr_assert(v != NULL && json_is_string(v), "JSON result has no string \"weights\"");
    const char *path = json_string_value(v), *slash = strrchr(path, '/');
    cr_expect(strcmp(slash ? slash + 1 : path, "model.safetensors") == 0, "weights at %s", path);
    if (dir) cr_expect(strncmp(path, dir, strlen(dir)) == 0, "weights %s are not in --out %s", path, dir);
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f != NULL, "\"weights\": %s", kiln_last_error());
    int count = kiln_safetensors_count(f);
    for (int i = 0; i < count; i++) {
        const char *name = kiln_safetensors_entry_at(f, i)->name;
        cr_expect(strncmp(name, "optimizer", 9) != 0, "%s holds optimizer state '%s'", path, name);
    }
    kiln_safetensors_close(f);
    cr_expect_eq(count, n, "%s holds %d tensors, not the model's %d", path, count, n);
}

char *kt_temp_dir(void) {
    char *d = strdup("/tmp/kiln_example_XXXXXX");
    cr_assert(mkdtemp(d) != NULL, "mkdtemp failed");
    return d;
}

void kt_temp_dir_remove(char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d) closedir(d);
    rmdir(dir);
    free(dir);
}

bool kt_fashion_mnist_available(const char *test) {
    char dir[4096];
    if (kx_fashion_mnist_find(NULL, dir, sizeof dir) == KILN_STATUS_OK) return true;
    kiln_clear_error();
    fprintf(stderr, "KILN-TEST-SKIP %s: Fashion-MNIST is not installed (Debian package dataset-fashion-mnist; "
                    "scripts/setup.sh installs it)\n", test);
    return false;
}

char *kt_fashion_mnist_fake(void) {
    char *dir = kt_temp_dir(), path[512];
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                            "t10k-labels-idx1-ubyte.gz"};
    enum { N = 64 };
    static uint8_t img[16 + N * 784], lab[8 + N];
    const uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, N, 0, 0, 0, 28, 0, 0, 0, 28}, lh[8] = {0, 0, 8, 1, 0, 0, 0, N};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < N * 784; i++) img[16 + i] = (uint8_t)((i * 37 + i / 784 * 11) % 256);
    for (int i = 0; i < N; i++) lab[8 + i] = (uint8_t)(i % 10);
    for (int k = 0; k < 4; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        gzFile g = gzopen(path, "wb");
        cr_assert_not_null(g);
        unsigned n = k % 2 ? sizeof lab : sizeof img;
        cr_assert_eq(gzwrite(g, k % 2 ? lab : img, n), (int)n);
        gzclose(g);
    }
    return dir;
}

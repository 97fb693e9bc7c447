/* The fuzz harnesses' shared support: input files, per-input leak checks, the walk a
 * user makes over a loaded tensor, and the checkpoint harness's model (fuzz_common.h). */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void kf_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    fprintf(stderr, "kiln-fuzz: INVARIANT BROKEN at %s:%d (%s): ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nkiln-fuzz: kiln's last error: %s\n", kiln_last_error() ? kiln_last_error() : "(none)");
    fflush(stderr);
    abort();
}

void kf_note(const char *fmt, ...) {
    static int on = -1;
    if (on < 0) on = getenv("KILN_FUZZ_VERBOSE") && getenv("KILN_FUZZ_VERBOSE")[0] == '1';
    if (!on) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln-fuzz: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

/* ---- the input as a file -------------------------------------------------------------- */

static int g_fd = -1;
static char g_path[256];

static void write_all(int fd, const uint8_t *data, size_t size) {
    KF_CHECK(ftruncate(fd, 0) == 0, "ftruncate: %s", strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t k = pwrite(fd, data + done, size - done, (off_t)done);
        KF_CHECK(k > 0, "writing the input file: %s", strerror(errno));
        done += (size_t)k;
    }
}

const char *kf_input_path(const uint8_t *data, size_t size) {
    if (g_fd < 0) {
#ifdef MFD_CLOEXEC
        g_fd = memfd_create("kiln-fuzz-input", MFD_CLOEXEC);
        if (g_fd >= 0) snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
#endif
        if (g_fd < 0) {
            const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
            snprintf(g_path, sizeof g_path, "%s/kiln-fuzz-input.%ld", dir, (long)getpid());
            g_fd = open(g_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            KF_CHECK(g_fd >= 0, "cannot create %s: %s", g_path, strerror(errno));
        }
    }
    write_all(g_fd, data, size);
    return g_path;
}

static char g_scratch[256];

static void remove_scratch(void) {
    if (g_scratch[0]) rmdir(g_scratch); /* the harnesses unlink what they write */
    if (g_fd >= 0 && strncmp(g_path, "/proc/", 6) != 0) unlink(g_path);
}

const char *kf_scratch_path(const char *name) {
    if (!g_scratch[0]) {
        const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
        snprintf(g_scratch, sizeof g_scratch, "%s/kiln-fuzz.%ld", dir, (long)getpid());
        KF_CHECK(mkdir(g_scratch, 0700) == 0 || errno == EEXIST, "cannot create %s: %s", g_scratch, strerror(errno));
        atexit(remove_scratch);
    }
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", g_scratch, name);
    return p;
}

/* ---- per input ---------------------------------------------------------------------------- */

kiln_scope *kf_begin(void) {
    kiln_clear_error();
    kiln_memory_set_limit(KILN_CPU, KF_POOL_LIMIT);
    kiln_scope *s = kiln_scope_begin();
    KF_CHECK(s != NULL, "kiln_scope_begin failed");
    return s;
}

void kf_end(kiln_scope *s) {
    kiln_scope_end(s);
    kiln_pool_stats st = kiln_memory_stats(KILN_CPU);
    KF_CHECK(st.in_use == 0, "%zu bytes still live in the CPU pool after the input's scope ended and everything "
             "was freed (a tensor outside any scope, or one the library kept)", st.in_use);
    kiln_shutdown();
    st = kiln_memory_stats(KILN_CPU);
    KF_CHECK(st.in_use == 0 && st.reserved == 0, "after kiln_shutdown the CPU pool still has %zu bytes in use, %zu "
             "reserved", st.in_use, st.reserved);
    kiln_clear_error();
}

/* ---- using a tensor --------------------------------------------------------------------- */

void *kf_tensor_bytes(kiln_tensor *t, size_t *n) {
    int64_t numel = kiln_tensor_numel(t);
    size_t bytes = (size_t)numel * kiln_dtype_size(kiln_tensor_dtype(t));
    void *b = malloc(bytes ? bytes : 1);
    KF_CHECK(b != NULL, "out of host memory for a %zu-byte copy", bytes);
    kiln_clear_error();
    kiln_status st = kiln_tensor_to_host(t, b, bytes);
    KF_CHECK(st == KILN_STATUS_OK, "kiln_tensor_to_host of a %lld-element tensor failed", (long long)numel);
    *n = bytes;
    return b;
}

/* NULL from an op must come with an error (errors are values). */
static void expect_error(const char *op, const char *what) {
    KF_CHECK(kiln_last_status() != KILN_STATUS_OK, "%s of %s returned NULL without setting an error", op, what);
    kiln_clear_error();
}

static bool agree(double got, double want, double scale) {
    if (!isfinite(want) || !isfinite(scale) || scale > 1e37) return true; /* overflow or NaN in the data */
    return fabs(got - want) <= 1e-5 * scale + 1e-30;
}

void kf_use_tensor(kiln_tensor *t, const char *what) {
    if (!t) return;
    kiln_scope *s = kiln_scope_begin();
    int nd = kiln_tensor_ndim(t);
    KF_CHECK(nd >= 0 && nd <= KILN_MAX_DIMS, "%s has %d dimensions", what, nd);
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        shape[i] = kiln_tensor_size(t, i);
        KF_CHECK(shape[i] >= 0, "%s has dimension %d of size %lld", what, i, (long long)shape[i]);
    }
    int64_t numel = kiln_tensor_numel(t);
    kiln_clear_error();
    kiln_tensor *f = kiln_tensor_cast(t, KILN_F32);
    if (!f) {
        expect_error("kiln_tensor_cast", what);
        kiln_scope_end(s);
        return;
    }
    KF_CHECK(kiln_tensor_ndim(f) == nd && kiln_tensor_numel(f) == numel && kiln_tensor_dtype(f) == KILN_F32,
             "the f32 cast of %s has another shape or dtype", what);
    for (int i = 0; i < nd; i++)
        KF_CHECK(kiln_tensor_size(f, i) == shape[i], "the f32 cast of %s has size %lld on axis %d, not %lld", what,
                 (long long)kiln_tensor_size(f, i), i, (long long)shape[i]);

    /* every element, on the host */
    double total = 0, scale = 0;
    size_t n;
    float *v = kf_tensor_bytes(f, &n);
    KF_CHECK(n == (size_t)numel * sizeof(float), "%s: %zu bytes for %lld floats", what, n, (long long)numel);
    for (int64_t i = 0; i < numel; i++) {
        total += v[i];
        scale += fabs((double)v[i]);
    }
    free(v);

    kiln_clear_error();
    kiln_tensor *all = kiln_sum_all(f);
    if (!all) {
        expect_error("kiln_sum_all", what);
    } else {
        KF_CHECK(kiln_tensor_numel(all) == 1, "sum_all of %s has %lld elements", what, (long long)kiln_tensor_numel(all));
        double got = kiln_tensor_item(all);
        KF_CHECK(agree(got, total, scale), "sum_all of %s is %.9g, its elements sum to %.9g", what, got, total);
    }
    for (int ax = 0; ax < nd; ax++) {
        kiln_clear_error();
        kiln_tensor *r = kiln_sum(f, 1, &ax, false);
        if (!r) {
            expect_error("kiln_sum over an axis", what); /* e.g. OOM: [0, 2^40] summed over axis 0 */
            continue;
        }
        KF_CHECK(kiln_tensor_ndim(r) == nd - 1, "sum of %s over axis %d has %d dimensions", what, ax, kiln_tensor_ndim(r));
        for (int i = 0, j = 0; i < nd; i++)
            if (i != ax) {
                KF_CHECK(kiln_tensor_size(r, j) == shape[i], "sum of %s over axis %d: size %lld on axis %d, not %lld",
                         what, ax, (long long)kiln_tensor_size(r, j), j, (long long)shape[i]);
                j++;
            }
        kiln_tensor *rr = kiln_sum_all(r);
        if (!rr) {
            expect_error("kiln_sum_all of an axis sum", what);
            continue;
        }
        double got = kiln_tensor_item(rr);
        KF_CHECK(agree(got, total, scale), "summing %s over axis %d then over all gives %.9g, its elements sum to %.9g",
                 what, ax, got, total);
    }
    kiln_scope_end(s);
    kiln_clear_error();
}

/* ---- the checkpoint model -------------------------------------------------------------- */

bool kf_model_make(kf_model *m) {
    memset(m, 0, sizeof *m);
    kiln_manual_seed(1);
    m->root = kiln_module_create("Net", NULL, NULL, NULL);
    if (!m->root) return false;
    if (kiln_module_add(m->root, "fc", kiln_linear_create(2, 2, true, KILN_F32)) != KILN_STATUS_OK ||
        kiln_module_add(m->root, "bn", kiln_batch_norm2d_create(2, KILN_F32)) != KILN_STATUS_OK ||
        kiln_module_finalize(m->root) != KILN_STATUS_OK) {
        kf_model_free(m);
        return false;
    }
    m->fc = kiln_module_child(m->root, "fc");
    m->bn = kiln_module_child(m->root, "bn");
    int n = kiln_module_num_parameters(m->root);
    kiln_tensor *params[8];
    if (n <= 0 || n > 8) {
        kf_model_free(m);
        return false;
    }
    for (int i = 0; i < n; i++) params[i] = kiln_module_parameter(m->root, i, NULL);
    m->opt = kiln_optim_adam(params, n, kiln_adam_defaults());
    if (!m->opt || !m->fc || !m->bn) {
        kf_model_free(m);
        return false;
    }
    return true;
}

kiln_status kf_model_step(kf_model *m) {
    static const float xv[6] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f, 1.5f};
    kiln_scope *s = kiln_scope_begin();
    kiln_clear_error();
    kiln_tensor *x = kiln_tensor_from_host(xv, 2, (int64_t[]){3, 2}, KILN_F32, KILN_CPU);
    kiln_tensor *h = kiln_module_forward(m->fc, x);
    kiln_tensor *y = kiln_module_forward(m->bn, kiln_reshape(h, 4, (int64_t[]){3, 2, 1, 1}));
    kiln_tensor *loss = kiln_mean_all(kiln_mul(y, y));
    kiln_optimizer_zero_grad(m->opt);
    kiln_status st = loss ? kiln_backward(loss, NULL) : kiln_last_status();
    if (st == KILN_STATUS_OK) st = kiln_optimizer_step(m->opt);
    kiln_scope_end(s);
    return st;
}

void kf_model_free(kf_model *m) {
    if (m->opt) kiln_optimizer_free(m->opt);
    if (m->root) kiln_module_free(m->root);
    memset(m, 0, sizeof *m);
}

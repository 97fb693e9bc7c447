/* Test support: scopes with leak checks, value assertions, the gradient checker,
 * the per-process temporary directory. */
#include "kiln_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static kiln_scope *g_test_scope;

void kiln_test_setup(void) {
    kiln_clear_error();
    kiln_manual_seed(1234);
    g_test_scope = kiln_scope_begin();
}

void kt_check_leaks(void) {
    if (g_test_scope) kiln_scope_end(g_test_scope);
    g_test_scope = NULL;
    size_t live = kiln_memory_stats(KILN_CPU).in_use;
    cr_expect_eq(live, 0, "leak check: %zu bytes still live in the CPU pool after the test scope ended", live);
}

void kiln_test_teardown(void) {
    if (g_test_scope) kiln_scope_end(g_test_scope);
    g_test_scope = NULL;
    kiln_shutdown();
}

kiln_tensor *kt_tensor(kiln_dtype dt, int ndim, const int64_t *shape, const double *values) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    kiln_tensor *d = kiln_tensor_from_host(values, ndim, shape, KILN_F64, KILN_CPU);
    if (dt == KILN_F64 || !d) return d;
    return kiln_tensor_cast(d, dt);
}

double *kt_values(const kiln_tensor *t) {
    cr_assert(t != NULL, "tensor is NULL: %s", kiln_last_error());
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *d = kiln_tensor_cast((kiln_tensor *)t, KILN_F64);
    cr_assert(d != NULL, "cast failed: %s", kiln_last_error());
    int64_t n = kiln_tensor_numel(d);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    cr_assert(kiln_tensor_to_host(d, v, (size_t)n * sizeof *v) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_scope_end(s);
    return v;
}

void kt_expect_values(const kiln_tensor *t, const double *expected, int64_t n, double atol, double rtol) {
    cr_assert(t != NULL, "tensor is NULL: %s", kiln_last_error());
    cr_assert_eq(kiln_tensor_numel(t), n, "tensor has %lld elements, expected %lld", (long long)kiln_tensor_numel(t),
                 (long long)n);
    double *v = kt_values(t);
    for (int64_t i = 0; i < n; i++) {
        double e = expected[i], tol = atol + rtol * fabs(e);
        bool ok = (isnan(e) && isnan(v[i])) || (isinf(e) && v[i] == e) || fabs(v[i] - e) <= tol;
        cr_expect(ok, "element %lld: got %.9g, expected %.9g (tolerance %.3g)", (long long)i, v[i], e, tol);
    }
    free(v);
}

void kt_expect_shape(const kiln_tensor *t, int ndim, const int64_t *shape) {
    cr_assert(t != NULL, "tensor is NULL: %s", kiln_last_error());
    cr_assert_eq(kiln_tensor_ndim(t), ndim, "ndim %d, expected %d", kiln_tensor_ndim(t), ndim);
    for (int i = 0; i < ndim; i++)
        cr_expect_eq(kiln_tensor_shape(t)[i], shape[i], "axis %d: size %lld, expected %lld", i,
                     (long long)kiln_tensor_shape(t)[i], (long long)shape[i]);
}

void kt_expect_error(kiln_status s, const char *needle) {
    cr_expect_eq(kiln_last_status(), s, "status '%s', expected '%s' (message: %s)",
                 kiln_status_name(kiln_last_status()), kiln_status_name(s), kiln_last_error());
    if (needle)
        cr_expect(strstr(kiln_last_error(), needle) != NULL, "message '%s' does not mention '%s'", kiln_last_error(),
                  needle);
    kiln_clear_error();
}

kiln_tensor *kt_rand_input(int ndim, const int64_t *shape, double lo, double hi) {
    kiln_tensor *t = kiln_tensor_rand(ndim, shape, lo, hi, KILN_F64, KILN_CPU);
    cr_assert(t != NULL, "%s", kiln_last_error());
    kiln_tensor_set_requires_grad(t, true);
    return t;
}

/* sum(f(x) * w) as a double, with grad off. */
static double projected(kt_fn f, void *ctx, kiln_tensor *const *inputs, const double *w, int64_t nw) {
    kiln_scope *s = kiln_scope_begin();
    kiln_no_grad_begin();
    kiln_tensor *y = f(inputs, ctx);
    kiln_no_grad_end();
    cr_assert(y != NULL, "gradcheck: function failed: %s", kiln_last_error());
    cr_assert_eq(kiln_tensor_numel(y), nw, "gradcheck: output size changed");
    double *v = kt_values(y);
    double acc = 0;
    for (int64_t i = 0; i < nw; i++) acc += v[i] * w[i];
    free(v);
    kiln_scope_end(s);
    return acc;
}

bool kt_gradcheck(kt_fn f, void *ctx, int n, kiln_tensor *const *inputs, double eps, double atol, double rtol) {
    kiln_scope *s = kiln_scope_begin();
    for (int i = 0; i < n; i++) {
        cr_assert(inputs[i] && kiln_tensor_dtype(inputs[i]) == KILN_F64 && kiln_tensor_is_contiguous(inputs[i]),
                  "gradcheck: input %d must be a contiguous f64 tensor", i);
        kiln_tensor_zero_grad(inputs[i]);
    }
    kiln_tensor *y = f(inputs, ctx);
    cr_assert(y != NULL, "gradcheck: function failed: %s", kiln_last_error());
    int64_t nw = kiln_tensor_numel(y);
    kiln_tensor *wt = kiln_tensor_rand(kiln_tensor_ndim(y), kiln_tensor_shape(y), -1.0, 1.0, KILN_F64, KILN_CPU);
    double *w = kt_values(wt);
    kiln_tensor *loss = kiln_sum_all(kiln_mul(y, wt));
    cr_assert(kiln_backward(loss, NULL) == KILN_STATUS_OK, "gradcheck: backward failed: %s", kiln_last_error());
    bool all_ok = true;
    for (int i = 0; i < n; i++) {
        if (!kiln_tensor_requires_grad(inputs[i])) continue;
        kiln_tensor *g = kiln_tensor_grad(inputs[i]);
        cr_assert(g != NULL, "gradcheck: input %d received no gradient", i);
        double *ga = kt_values(g);
        double *x = kiln_tensor_data(inputs[i]);
        int64_t m = kiln_tensor_numel(inputs[i]);
        double worst = 0;
        int64_t worst_at = -1;
        double worst_num = 0;
        for (int64_t j = 0; j < m; j++) {
            double orig = x[j];
            x[j] = orig + eps;
            double fp = projected(f, ctx, inputs, w, nw);
            x[j] = orig - eps;
            double fm = projected(f, ctx, inputs, w, nw);
            x[j] = orig;
            double num = (fp - fm) / (2 * eps);
            double err = fabs(num - ga[j]) - (atol + rtol * fabs(num));
            if (err > worst) {
                worst = err;
                worst_at = j;
                worst_num = num;
            }
        }
        if (worst_at >= 0) {
            cr_expect(false, "gradcheck: input %d element %lld: analytic %.10g vs numeric %.10g", i,
                      (long long)worst_at, ga[worst_at], worst_num);
            all_ok = false;
        }
        free(ga);
    }
    free(w);
    kiln_scope_end(s);
    return all_ok;
}

kiln_tensor *kt_to_gpu(kiln_tensor *t) {
    kiln_tensor *g = kiln_tensor_to(t, KILN_CUDA(0));
    cr_assert(g, "%s", kiln_last_error());
    return g;
}

void kt_expect_same(kiln_tensor *cpu, kiln_tensor *cuda, double atol, double rtol, const char *what) {
    cr_assert(cpu && cuda, "%s: %s", what, kiln_last_error());
    cr_assert_eq(kiln_tensor_numel(cpu), kiln_tensor_numel(cuda), "%s", what);
    double *a = kt_values(cpu), *b = kt_values(cuda);
    for (int64_t i = 0; i < kiln_tensor_numel(cpu); i++) {
        bool ok = (a[i] != a[i] && b[i] != b[i]) || fabs(a[i] - b[i]) <= atol + rtol * fabs(a[i]);
        if (!ok) {
            double x = a[i], y = b[i];
            free(a);
            free(b);
            cr_assert_fail("%s: element %lld: cpu %.9g, cuda %.9g", what, (long long)i, x, y);
        }
    }
    free(a);
    free(b);
}

static char g_temp_dir[64];

const char *kt_scratch_dir(void) {
    if (!g_temp_dir[0]) {
        strcpy(g_temp_dir, "/tmp/kiln_test_XXXXXX");
        if (!mkdtemp(g_temp_dir)) {
            int err = errno;
            g_temp_dir[0] = '\0';
            cr_assert_fail("mkdtemp failed: %s", strerror(err));
        }
    }
    return g_temp_dir;
}

const char *kt_scratch_path(char *buf, size_t n, const char *name) {
    int len = snprintf(buf, n, "%s/%s", kt_scratch_dir(), name);
    cr_assert(len >= 0 && (size_t)len < n, "temporary path %s/%s does not fit in %zu bytes", kt_scratch_dir(), name, n);
    return buf;
}

void kt_scratch_remove(void) {
    if (!g_temp_dir[0]) return;
    char cmd[sizeof g_temp_dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_temp_dir);
    g_temp_dir[0] = '\0';
    cr_expect_eq(system(cmd), 0, "%s failed", cmd);
}

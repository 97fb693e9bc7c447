/* The benchmark driver's value formula and statistics. The formula must stay in
 * step with fx_value in benchmarks/torch/bench_torch.py: both sides start from the
 * same weights and inputs, so data-dependent costs (denormals, branches) match. */
#include "bench.h"

#include <stdlib.h>

double bench_fx_value(int64_t j, int k) {
    uint64_t h = ((uint64_t)j * 2654435761u + (uint64_t)(k + 1) * 40503u) & 0xffffffffu;
    return (double)((int64_t)((h >> 7) % 255) - 127) / 512.0;
}

int64_t bench_fx_index(int64_t j, int k, int64_t c) {
    uint64_t h = ((uint64_t)j * 2654435761u + (uint64_t)(k + 1) * 40503u) & 0xffffffffu;
    return (int64_t)((h >> 7) % (uint64_t)c);
}

static int64_t numel_of(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* mode 0: values + offset, 1: binary, 2: indices below classes */
static kiln_tensor *fx_make(kiln_device dev, int ndim, const int64_t *shape, int k, double offset, int mode,
                            int64_t classes) {
    int64_t n = numel_of(ndim, shape);
    size_t es = mode == 2 ? sizeof(int64_t) : sizeof(float);
    void *buf = malloc((size_t)(n > 0 ? n : 1) * es);
    if (!buf) {
        kiln_set_error(KILN_STATUS_OOM, "bench: no host memory for a %lld-element input", (long long)n);
        return NULL;
    }
    for (int64_t j = 0; j < n; j++) {
        if (mode == 2)
            ((int64_t *)buf)[j] = bench_fx_index(j, k, classes);
        else if (mode == 1)
            ((float *)buf)[j] = bench_fx_value(j, k) > 0 ? 1.0f : 0.0f;
        else
            ((float *)buf)[j] = (float)(bench_fx_value(j, k) + offset);
    }
    kiln_tensor *t = kiln_tensor_from_host(buf, ndim, shape, mode == 2 ? KILN_I64 : KILN_F32, dev);
    free(buf);
    return t;
}

kiln_tensor *bench_fx_tensor(kiln_device dev, int ndim, const int64_t *shape, int k, double offset) {
    return fx_make(dev, ndim, shape, k, offset, 0, 0);
}

kiln_tensor *bench_fx_binary(kiln_device dev, int ndim, const int64_t *shape, int k) {
    return fx_make(dev, ndim, shape, k, 0, 1, 0);
}

kiln_tensor *bench_fx_labels(kiln_device dev, int ndim, const int64_t *shape, int k, int64_t classes) {
    return fx_make(dev, ndim, shape, k, 0, 2, classes);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *v, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return v[n - 1];
    return v[i] + (pos - i) * (v[i + 1] - v[i]);
}

bench_stats bench_stats_of(double *v, int n) {
    bench_stats s = {0};
    s.n = n;
    if (n <= 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    s.min = v[0];
    s.max = v[n - 1];
    s.median = quantile(v, n, 0.5);
    s.q1 = quantile(v, n, 0.25);
    s.q3 = quantile(v, n, 0.75);
    return s;
}

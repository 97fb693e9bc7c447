/* Devices: names, the default device, pools per device and raw copies. CUDA
 * specifics live in core/cuda_device.c, built only with KILN_CUDA. */
#include "internal.h"
#include "cuda_device.h"
#include "threads.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/sysinfo.h>

size_t kiln_dtype_size(kiln_dtype dt) {
    static const size_t sizes[KILN_DTYPE_COUNT] = {4, 8, 2, 2, 4, 8, 1};
    return (unsigned)dt < KILN_DTYPE_COUNT ? sizes[dt] : 0;
}

const char *kiln_dtype_name(kiln_dtype dt) {
    static const char *names[KILN_DTYPE_COUNT] = {"f32", "f64", "f16", "bf16", "i32", "i64", "u8"};
    return (unsigned)dt < KILN_DTYPE_COUNT ? names[dt] : "invalid dtype";
}

bool kiln_device_equal(kiln_device a, kiln_device b) {
    return a.type == b.type && (a.type == KILN_DEVICE_CPU || a.index == b.index);
}

const char *kiln_device_name(kiln_device d, char *buf, size_t n) {
    if (d.type == KILN_DEVICE_CPU) snprintf(buf, n, "cpu");
    else if (d.type == KILN_DEVICE_CUDA) snprintf(buf, n, "cuda:%d", d.index);
    else snprintf(buf, n, "device type %d", (int)d.type); /* not a device: say so, never "cuda" */
    return buf;
}

/* Parses without recording an error, so that kiln_default_device can word its own. */
static bool parse_device(const char *s, kiln_device *out) {
    if (strcmp(s, "cpu") == 0) {
        *out = KILN_CPU;
        return true;
    }
    if (strncmp(s, "cuda", 4) == 0) {
        if (s[4] == '\0') {
            *out = KILN_CUDA(0);
            return true;
        }
        if (s[4] == ':' && s[5] >= '0' && s[5] <= '9') { /* digits only: strtol would take "+1", " 1" */
            char *end;
            long i = strtol(s + 5, &end, 10);
            if (*end == '\0' && i < 1024) {
                *out = KILN_CUDA((int)i);
                return true;
            }
        }
    }
    return false;
}

kiln_status kiln_device_parse(const char *s, kiln_device *out) {
    if (!s || !out) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_device_parse: %s is NULL", s ? "out" : "name");
    if (parse_device(s, out)) return KILN_STATUS_OK;
    return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "unknown device '%s': use cpu, cuda or cuda:N", s);
}

int kiln_cuda_device_count(void) {
#ifdef KILN_HAVE_CUDA
    return kiln__cuda_device_count();
#else
    return 0;
#endif
}

bool kiln_device_available(kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) return true;
    return d.type == KILN_DEVICE_CUDA && d.index >= 0 && d.index < kiln_cuda_device_count();
}

kiln_device kiln_default_device(void) {
    const char *env = getenv("KILN_DEVICE");
    kiln_device d;
    kiln_device fallback = kiln_cuda_device_count() > 0 ? KILN_CUDA(0) : KILN_CPU;
    if (!env || !*env) return fallback;
    if (parse_device(env, &d)) return d;
    char fb[16];
    kiln__error(KILN_STATUS_INVALID_ARGUMENT, "KILN_DEVICE='%s' is not a device (use cpu, cuda or cuda:N); using %s",
                env, kiln_device_name(fallback, fb, sizeof fb));
    return fallback;
}

/* ---- pools ------------------------------------------------------------------ */

static void *cpu_alloc(void *ctx, size_t n) {
    (void)ctx;
    return aligned_alloc(64, n);
}
static void cpu_free(void *ctx, void *p, size_t n) {
    (void)ctx;
    (void)n;
    free(p);
}

static kiln_pool *g_cpu_pool;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;
/* Physical memory plus swap: no single CPU allocation can be larger. */
static size_t cpu_capacity(void) {
    struct sysinfo si;
    if (sysinfo(&si) != 0) return 0;
    unsigned long long unit = si.mem_unit ? si.mem_unit : 1;
    unsigned long long total = ((unsigned long long)si.totalram + si.totalswap) * unit;
    return total > SIZE_MAX ? SIZE_MAX : (size_t)total;
}

static void make_cpu_pool(void) {
    kiln__threads_link(); /* keeps core/threads.o (thread defaults) in static programs */
    g_cpu_pool = kiln_pool_create((kiln_pool_backend){cpu_alloc, cpu_free, NULL, "cpu", cpu_capacity()});
}

static bool device_usable(kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) return true;
    if (d.type != KILN_DEVICE_CUDA) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "device type %d is not a kiln_device_type (use KILN_CPU or "
                    "KILN_CUDA(n))", (int)d.type);
        return false;
    }
#ifndef KILN_HAVE_CUDA
    kiln__error(KILN_STATUS_NO_DEVICE,
                "CUDA device cuda:%d requested, but this kiln was built without CUDA; rebuild with "
                "-DKILN_CUDA=ON or use the cpu device", d.index);
    return false;
#else
    return kiln__cuda_check_device(d.index);
#endif
}

kiln_pool *kiln__device_pool(kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) {
        pthread_once(&g_cpu_once, make_cpu_pool);
        return g_cpu_pool;
    }
    if (!device_usable(d)) return NULL;
#ifdef KILN_HAVE_CUDA
    return kiln__cuda_pool(d.index);
#else
    return NULL;
#endif
}

kiln_pool_stats kiln_memory_stats(kiln_device d) {
    kiln_pool_stats zero = {0};
    if (d.type == KILN_DEVICE_CUDA && !kiln_device_available(d)) return zero;
    kiln_pool *p = kiln__device_pool(d);
    return p ? kiln_pool_get_stats(p) : zero;
}

void kiln_memory_release_cache(kiln_device d) {
    if (d.type == KILN_DEVICE_CUDA && !kiln_device_available(d)) return;
    kiln_pool *p = kiln__device_pool(d);
    if (p) kiln_pool_release_cache(p);
}

void kiln_memory_set_limit(kiln_device d, size_t bytes) {
    kiln_pool *p = kiln__device_pool(d);
    if (p) kiln_pool_set_limit(p, bytes);
}

void kiln_memory_reset_peak(kiln_device d) {
    if (d.type == KILN_DEVICE_CUDA && !kiln_device_available(d)) return;
    kiln_pool *p = kiln__device_pool(d);
    if (p) kiln_pool_reset_peak(p);
}

void kiln__shutdown_pools(void) {
    if (g_cpu_pool) kiln_pool_release_cache(g_cpu_pool);
#ifdef KILN_HAVE_CUDA
    kiln__cuda_shutdown();
#endif
}

kiln_status kiln__memcpy(void *dst, kiln_device ddev, const void *src, kiln_device sdev, size_t n) {
    if (n == 0) return KILN_STATUS_OK;
    if (ddev.type == KILN_DEVICE_CPU && sdev.type == KILN_DEVICE_CPU) {
        memmove(dst, src, n);
        return KILN_STATUS_OK;
    }
#ifdef KILN_HAVE_CUDA
    return kiln__cuda_memcpy(dst, ddev, src, sdev, n);
#else
    return kiln__error(KILN_STATUS_NO_DEVICE, "copy involving a CUDA device, but this kiln was built without CUDA");
#endif
}

kiln_status kiln_synchronize(kiln_device d) {
    if (d.type == KILN_DEVICE_CPU) return KILN_STATUS_OK;
    if (!device_usable(d)) return kiln_last_status();
#ifdef KILN_HAVE_CUDA
    return kiln__cuda_synchronize(d.index);
#else
    return KILN_STATUS_NO_DEVICE;
#endif
}

/* ---- math modes (read by the CUDA backend; see include/kiln/cuda.h) ------------------ */

static bool g_tf32 = false, g_deterministic = false;

void kiln_set_tf32(bool on) { g_tf32 = on; }
bool kiln_tf32(void) { return g_tf32; }
void kiln_set_deterministic(bool on) { g_deterministic = on; }
bool kiln_deterministic(void) { return g_deterministic; }


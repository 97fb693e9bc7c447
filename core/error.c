/* Errors as values: a thread-local status and message. The first error since the
 * last clear is kept, so a chain of ops that fails early reports the real cause. */
#include "internal.h"

#include <stdio.h>

static _Thread_local kiln_status g_status = KILN_STATUS_OK;
static _Thread_local char g_message[1024];

kiln_status kiln_last_status(void) { return g_status; }
const char *kiln_last_error(void) { return g_message; }

void kiln_clear_error(void) {
    g_status = KILN_STATUS_OK;
    g_message[0] = '\0';
}

const char *kiln_status_name(kiln_status s) {
    switch (s) {
    case KILN_STATUS_OK: return "ok";
    case KILN_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case KILN_STATUS_SHAPE: return "shape error";
    case KILN_STATUS_DTYPE: return "dtype error";
    case KILN_STATUS_DEVICE: return "device error";
    case KILN_STATUS_OOM: return "out of memory";
    case KILN_STATUS_IO: return "i/o error";
    case KILN_STATUS_FORMAT: return "format error";
    case KILN_STATUS_NO_DEVICE: return "no device";
    case KILN_STATUS_BACKEND: return "backend error";
    case KILN_STATUS_STATE: return "state error";
    case KILN_STATUS_ANOMALY: return "anomaly";
    case KILN_STATUS_NOT_IMPLEMENTED: return "not implemented";
    }
    return "unknown status";
}

static kiln_status set_errorv(kiln_status s, const char *fmt, va_list ap) {
    if (g_status != KILN_STATUS_OK || s == KILN_STATUS_OK) return s;
    g_status = s;
    vsnprintf(g_message, sizeof g_message, fmt, ap);
    return s;
}

kiln_status kiln__error(kiln_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_errorv(s, fmt, ap);
    va_end(ap);
    return s;
}

/* The same for code outside the library (example support, user programs), so their
 * failures read like the library's own. */
kiln_status kiln_set_error(kiln_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_errorv(s, fmt, ap);
    va_end(ap);
    return s;
}

const char *kiln__shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, n - used, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

bool kiln__axis(const char *op, int axis, int ndim, int *out) {
    int n = ndim ? ndim : 1; /* a 0-d tensor takes axis 0 or -1, as in torch */
    int a = axis < 0 ? axis + n : axis;
    if (a < 0 || a >= n) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: axis %d is out of range for a %d-d tensor (use -%d..%d)", op,
                    axis, ndim, ndim, ndim - 1);
        return false;
    }
    *out = a;
    return true;
}

bool kiln__check_inputs(const char *op, int n, kiln_tensor *const *ts) {
    for (int i = 0; i < n; i++) {
        if (!ts[i]) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                        "%s: input %d is NULL (an earlier op failed, or the tensor was never created)", op, i);
            return false;
        }
    }
    for (int i = 1; i < n; i++) {
        if (!kiln_device_equal(ts[i]->device, ts[0]->device)) {
            char a[16], b[16];
            kiln__error(KILN_STATUS_DEVICE,
                        "%s: input 0 is on %s but input %d is on %s; move them to one device with "
                        "kiln_tensor_to()",
                        op, kiln_device_name(ts[0]->device, a, sizeof a), i,
                        kiln_device_name(ts[i]->device, b, sizeof b));
            return false;
        }
    }
    return true;
}

bool kiln__check_float_inputs(const char *op, int n, kiln_tensor *const *ts) {
    if (!kiln__check_inputs(op, n, ts)) return false;
    for (int i = 0; i < n; i++) {
        kiln_dtype dt = ts[i]->dtype;
        bool ok = dt == KILN_F32 || (dt == KILN_F64 && ts[i]->device.type == KILN_DEVICE_CPU);
        if (!ok) {
            kiln__error(KILN_STATUS_DTYPE, "%s: input %d has dtype %s, which this op does not compute on %s; "
                        "cast it with kiln_tensor_cast(t, KILN_F32)",
                        op, i, kiln_dtype_name(dt), ts[i]->device.type == KILN_DEVICE_CPU ? "the CPU" : "CUDA");
            return false;
        }
        if (i && dt != ts[0]->dtype) {
            kiln__error(KILN_STATUS_DTYPE, "%s: inputs have different dtypes (%s and %s); cast one with "
                        "kiln_tensor_cast()", op, kiln_dtype_name(ts[0]->dtype), kiln_dtype_name(dt));
            return false;
        }
    }
    return true;
}

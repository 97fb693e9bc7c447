/* Statistics and linear algebra for analysing learned representations: covariance
 * (composed of ops, so it is differentiable) and the symmetric eigen-decomposition
 * (one registry op whose output packs eigenvalues above eigenvectors). */
#include "internal.h"
#include "../kernels/cpu/linalg.h"

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_eigh(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_eigh = {
    .name = "eigh",
    .cpu = kiln_cpu_eigh,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_eigh),
    .not_differentiable = true};

kiln_tensor *kiln_cov(kiln_tensor *x, bool rowvar, int correction) {
    if (!kiln__check_float_inputs("cov", 1, &x)) return NULL;
    char b[128];
    if (x->ndim > 2) {
        kiln__error(KILN_STATUS_SHAPE, "cov: input %s must be 2-d (variables x observations with rowvar, else "
                    "observations x variables), or 1-d / 0-d for one variable",
                    kiln__shape_str(x->ndim, x->shape, b, sizeof b));
        return NULL;
    }
    if (correction < 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "cov: correction %d must be >= 0", correction);
        return NULL;
    }
    /* torch.cov takes a 1-d (or 0-d) input as one variable's observations */
    int64_t n1 = x->ndim ? x->shape[0] : 1;
    kiln_tensor *obs = x->ndim < 2 ? kiln_reshape(x, 2, (int64_t[]){n1, 1}) : rowvar ? kiln_transpose(x, 0, 1) : x;
    if (!obs) return NULL; /* (N, D) */
    int64_t n = obs->shape[0], d = obs->shape[1];
    int axis0 = 0;
    kiln_tensor *centered = kiln_sub(obs, kiln_mean(obs, 1, &axis0, true));
    kiln_tensor *prod = kiln_matmul(kiln_transpose(centered, 0, 1), centered);
    /* torch: N - correction <= 0 gives inf/nan rather than an error */
    double denom = (double)(n - correction);
    kiln_tensor *c = kiln_mul_scalar(prod, 1.0 / denom);
    /* one variable: torch returns its variance as a 0-d tensor, not a (1, 1) matrix */
    return d == 1 && c ? kiln_reshape(c, 0, NULL) : c;
}

kiln_status kiln_eigh(kiln_tensor *a, kiln_tensor **values, kiln_tensor **vectors) {
    if (values) *values = NULL;
    if (vectors) *vectors = NULL;
    if (!values || !vectors) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "eigh: values and vectors must be "
                                                "non-NULL pointers to receive the results");
    if (!kiln__check_float_inputs("eigh", 1, &a)) return kiln_last_status();
    char b[128];
    if (a->ndim != 2 || a->shape[0] != a->shape[1])
        return kiln__error(KILN_STATUS_SHAPE, "eigh: input %s must be a square (n, n) matrix",
                           kiln__shape_str(a->ndim, a->shape, b, sizeof b));
    int64_t n = a->shape[0];
    kiln_tensor *packed = kiln__run(&kiln_op_eigh, 1, &a, kiln__new(2, (int64_t[]){n + 1, n}, a->dtype, a->device), NULL);
    if (!packed) return kiln_last_status();
    *values = kiln_reshape(kiln_slice(packed, 0, 0, 1, 1), 1, &n);
    *vectors = kiln_slice(packed, 0, 1, n + 1, 1);
    if (!*values || !*vectors) return kiln_last_status();
    return KILN_STATUS_OK;
}

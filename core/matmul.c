/* matmul with torch.matmul semantics: 1-d operands promoted (a to a row, b to a
 * column) and the added dim removed from the result, batch dims broadcast. The
 * backward is two more matmuls, dA = dC·Bᵀ and dB = Aᵀ·dC, summed over the batch
 * dims that were broadcast. */
#include "internal.h"
#include "op_attrs.h"
#include "../kernels/cpu/tensor_ops.h"

static void matmul_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_matmul(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_matmul = {
    .name = "matmul",
    .cpu = kiln_cpu_matmul,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_matmul),
    .backward = matmul_bw};

kiln_tensor *kiln_matmul(kiln_tensor *a, kiln_tensor *b) {
    kiln_tensor *in[2] = {a, b};
    if (!kiln__check_float_inputs("matmul", 2, in)) return NULL;
    char s1[128], s2[128];
    if (a->ndim == 0 || b->ndim == 0) {
        kiln__error(KILN_STATUS_SHAPE, "matmul: a %s and b %s: both operands need at least 1 dimension (use kiln_mul "
                    "to scale by a scalar)", kiln__shape_str(a->ndim, a->shape, s1, sizeof s1),
                    kiln__shape_str(b->ndim, b->shape, s2, sizeof s2));
        return NULL;
    }
    int64_t ka = a->shape[a->ndim - 1], kb = b->shape[b->ndim >= 2 ? b->ndim - 2 : 0];
    if (ka != kb) {
        kiln__error(KILN_STATUS_SHAPE, "matmul: a %s and b %s do not multiply: the inner dimensions differ (a has %lld "
                    "columns, b has %lld rows); the last dim of a must equal the %s of b",
                    kiln__shape_str(a->ndim, a->shape, s1, sizeof s1), kiln__shape_str(b->ndim, b->shape, s2, sizeof s2),
                    (long long)ka, (long long)kb, b->ndim >= 2 ? "second-to-last dim" : "length");
        return NULL;
    }
    /* batch dims: everything before the last two */
    int na = a->ndim > 2 ? a->ndim - 2 : 0, nbd = b->ndim > 2 ? b->ndim - 2 : 0, nb;
    int64_t batch[KILN_MAX_DIMS];
    int n = na > nbd ? na : nbd;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - na), ib = i - (n - nbd);
        int64_t x = ia >= 0 ? a->shape[ia] : 1, y = ib >= 0 ? b->shape[ib] : 1;
        if (x != y && x != 1 && y != 1) {
            kiln__error(KILN_STATUS_SHAPE, "matmul: a %s and b %s: batch dims do not broadcast (batch axis %d from "
                        "the end: %lld vs %lld); sizes must match or be 1",
                        kiln__shape_str(a->ndim, a->shape, s1, sizeof s1),
                        kiln__shape_str(b->ndim, b->shape, s2, sizeof s2), n - i, (long long)x, (long long)y);
            return NULL;
        }
        batch[i] = x == 1 ? y : x;
    }
    nb = n;

    /* promote 1-d operands (views, so their gradients flow back through a reshape) */
    bool a_vec = a->ndim == 1, b_vec = b->ndim == 1;
    kiln_tensor *a2 = a_vec ? kiln_unsqueeze(a, 0) : a;
    kiln_tensor *b2 = b_vec ? kiln_unsqueeze(b, 1) : b;
    if (a2 && !kiln__matmul_gemm_ok(a2)) a2 = kiln_tensor_contiguous(a2);
    if (b2 && !kiln__matmul_gemm_ok(b2)) b2 = kiln_tensor_contiguous(b2);
    if (!a2 || !b2) return NULL;
    int64_t M = a2->shape[a2->ndim - 2], N = b2->shape[b2->ndim - 1];
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < nb; i++) shape[i] = batch[i];
    shape[nb] = M;
    shape[nb + 1] = N;
    kiln_tensor *in2[2] = {a2, b2};
    kiln_tensor *c = kiln__run(&kiln_op_matmul, 2, in2, kiln__new(nb + 2, shape, a->dtype, a->device), NULL);
    if (!c || (!a_vec && !b_vec)) return c;
    /* drop the promoted dims: M when a was a vector, N when b was */
    int64_t rs[KILN_MAX_DIMS];
    int r = 0;
    for (int i = 0; i < nb; i++) rs[r++] = batch[i];
    if (!a_vec) rs[r++] = M;
    if (!b_vec) rs[r++] = N;
    return kiln_reshape(c, r, rs);
}

static void matmul_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *a = n->inputs[0], *b = n->inputs[1];
    if (n->needs_grad[0]) /* dA = dC·Bᵀ: the transpose is a view GEMM reads with its flag */
        gin[0] = kiln__sum_to(kiln_matmul(g, kiln_transpose(b, -1, -2)), a->ndim, a->shape);
    if (n->needs_grad[1]) /* dB = Aᵀ·dC */
        gin[1] = kiln__sum_to(kiln_matmul(kiln_transpose(a, -1, -2), g), b->ndim, b->shape);
}

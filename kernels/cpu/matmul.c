/* CPU matmul: one BLAS GEMM per broadcast batch element (or one GEMM for the
 * whole batch when b is shared and a's batch rows are evenly spaced, as in a
 * dense layer over (B, T, in)). Operands stored transposed go to GEMM with the
 * transpose flag, never copied; the front-end copies every other layout. */
#include "tensor_ops.h"

#include <cblas.h>

typedef struct {
    CBLAS_TRANSPOSE trans;
    int64_t ld; /* elements */
} gemm_operand;

/* How GEMM reads a rows x cols matrix with element strides rs, cs; false when it cannot. */
static bool gemm_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, gemm_operand *g) {
    int64_t minr = cols > 1 ? cols : 1, minc = rows > 1 ? rows : 1;
    if ((cols <= 1 || cs == 1) && (rows <= 1 || rs >= minr)) {
        g->trans = CblasNoTrans;
        g->ld = rows <= 1 ? minr : rs;
        return true;
    }
    if ((rows <= 1 || rs == 1) && (cols <= 1 || cs >= minc)) {
        g->trans = CblasTrans;
        g->ld = cols <= 1 ? minc : cs;
        return true;
    }
    return false;
}

bool kiln__matmul_gemm_ok(const kiln_tensor *t) {
    int n = t->ndim;
    int64_t es = (int64_t)kiln_dtype_size(t->dtype);
    gemm_operand g;
    return t->strides[n - 2] % es == 0 && t->strides[n - 1] % es == 0 &&
           gemm_layout(t->shape[n - 2], t->shape[n - 1], t->strides[n - 2] / es, t->strides[n - 1] / es, &g);
}

static void gemm(kiln_dtype dt, const gemm_operand *ga, const gemm_operand *gb, int64_t M, int64_t N, int64_t K,
                 const char *a, const char *b, char *c) {
    if (dt == KILN_F32)
        cblas_sgemm(CblasRowMajor, ga->trans, gb->trans, (int)M, (int)N, (int)K, 1.0f, (const float *)a, (int)ga->ld,
                    (const float *)b, (int)gb->ld, 0.0f, (float *)c, (int)(N > 1 ? N : 1));
    else
        cblas_dgemm(CblasRowMajor, ga->trans, gb->trans, (int)M, (int)N, (int)K, 1.0, (const double *)a, (int)ga->ld,
                    (const double *)b, (int)gb->ld, 0.0, (double *)c, (int)(N > 1 ? N : 1));
}

kiln_status kiln_cpu_matmul(const kiln_op_call *call) {
    const kiln_tensor *a = call->in[0], *b = call->in[1];
    kiln_tensor *out = call->out;
    int nd = out->ndim, nb = nd - 2;
    int64_t es = (int64_t)kiln_dtype_size(out->dtype);
    int64_t M = out->shape[nd - 2], N = out->shape[nd - 1], K = a->shape[a->ndim - 1];
    int64_t total = kiln_tensor_numel(out);
    if (total == 0) return KILN_STATUS_OK;
    if (K == 0) { /* an empty sum: zeros, without asking BLAS about zero-sized leading dims */
        memset(kiln__ptr(out), 0, (size_t)(total * es));
        return KILN_STATUS_OK;
    }
    gemm_operand ga, gb;
    if (!gemm_layout(M, K, a->strides[a->ndim - 2] / es, a->strides[a->ndim - 1] / es, &ga) ||
        !gemm_layout(K, N, b->strides[b->ndim - 2] / es, b->strides[b->ndim - 1] / es, &gb))
        return kiln__error(KILN_STATUS_STATE, "matmul: an operand reached the kernel in a layout GEMM cannot read "
                           "(a kiln bug; please report it)");
    if (M > INT32_MAX || N > INT32_MAX || K > INT32_MAX || ga.ld > INT32_MAX || gb.ld > INT32_MAX)
        return kiln__error(KILN_STATUS_SHAPE, "matmul: a matrix dimension exceeds the BLAS limit of %d", INT32_MAX);

    /* byte strides of the batch dims of a and b, broadcast to out's batch shape */
    int64_t sa[KILN_MAX_DIMS] = {0}, sb[KILN_MAX_DIMS] = {0};
    int64_t nbatch = 1;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        sa[i] = ia >= 0 && a->shape[ia] != 1 ? a->strides[ia] : 0;
        sb[i] = ib >= 0 && b->shape[ib] != 1 ? b->strides[ib] : 0;
        nbatch *= out->shape[i];
    }
    const char *pa = kiln__ptr(a), *pb = kiln__ptr(b);
    char *pc = kiln__ptr(out);

    /* b shared by every batch element and a's rows evenly spaced across batches
     * (a dense layer over (B, T, in)): the batch folds into M, one GEMM does all */
    bool fold = ga.trans == CblasNoTrans && nbatch > 1 && nbatch * M <= INT32_MAX;
    bool ld_known = M > 1;
    int64_t ld = ga.ld, span = M; /* rows covered so far by the inner batch dims */
    for (int i = nb - 1; fold && i >= 0; i--) {
        if (out->shape[i] == 1) continue;
        if (sb[i] != 0 || sa[i] <= 0 || sa[i] % es) {
            fold = false;
            break;
        }
        if (!ld_known) { /* single rows: the first batch stride becomes the row stride */
            ld = sa[i] / es;
            ld_known = true;
            if (ld < K || ld > INT32_MAX) fold = false;
        }
        if (sa[i] != span * ld * es) fold = false;
        span *= out->shape[i];
    }
    if (fold) {
        ga.ld = ld;
        gemm(out->dtype, &ga, &gb, nbatch * M, N, K, pa, pb, pc);
        return KILN_STATUS_OK;
    }

    int64_t idx[KILN_MAX_DIMS] = {0};
    for (int64_t t = 0; t < nbatch; t++) {
        gemm(out->dtype, &ga, &gb, M, N, K, pa, pb, pc + t * M * N * es);
        for (int d = nb - 1; d >= 0; d--) { /* odometer over the batch dims */
            pa += sa[d];
            pb += sb[d];
            if (++idx[d] < out->shape[d]) break;
            pa -= sa[d] * out->shape[d];
            pb -= sb[d] * out->shape[d];
            idx[d] = 0;
        }
    }
    return KILN_STATUS_OK;
}

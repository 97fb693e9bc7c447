/* argmax, max, max_backward (kernels/cuda/maxarg.cu) and concat (kernels/cuda/concat.cu)
 * through the emulator against the CPU kernels. Values are quantised so rows hold
 * ties (the first maximal index must win) and some rows hold NaNs (the first NaN
 * wins); axes contiguous in memory (the warp path, rows of 40 and 257) and strided
 * (a thread per position: NCHW channels, transposed and sliced inputs, C = 7).
 * Indices, gathers, scatters and copies are exact operations: bit for bit. */
#include "emu/emu_compare.h"
#include "kernels/cpu/tensor_ops.h"

TestSuite(cuda_emu_maxarg_concat, .init = kiln_test_setup, .fini = kiln_test_teardown);

extern const kiln_op_def kiln_op_argmax;
extern const kiln_op_def kiln_op_concat;
extern const kiln_op_def kiln_op_max;
extern const kiln_op_def kiln_op_max_backward;

kiln_status kiln_emu_cuda_argmax(const kiln_op_call *call);
kiln_status kiln_emu_cuda_max(const kiln_op_call *call);
kiln_status kiln_emu_cuda_max_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_concat(const kiln_op_call *call);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    int axis;
    ec_layout l;
} ax_case;

static const ax_case cases[] = {
    {"rows of 257 (warp)", 2, {37, 257}, 1, EC_CONTIG},
    {"rows of 40, unaligned (warp)", 2, {9, 40}, 1, EC_OFFSET},
    {"rows of 7 (thread)", 2, {257, 7}, 1, EC_CONTIG},
    {"NCHW channels, C=7, 3x43 pixels", 4, {2, 7, 3, 43}, 1, EC_CONTIG},
    {"first axis of a transposed input (warp)", 2, {37, 29}, 0, EC_TRANSPOSED},
    {"last axis of a transposed input", 2, {37, 29}, 1, EC_TRANSPOSED},
    {"last axis of a sliced input", 2, {29, 100}, 1, EC_SLICED},
    {"leading axis", 3, {11, 5, 33}, 0, EC_CONTIG},
};

/* A quantised input (ties) with a NaN in every fifth position's line. */
static kiln_tensor *input(kiln_dtype dt, const ax_case *c, uint64_t seed) {
    kiln_tensor *x = ec_input(dt, c->ndim, c->shape, c->l, -2, 2, 0.5, seed);
    int64_t n = kiln_tensor_numel(x);
    double *v = kt_values(x); /* logical (row-major) order */
    for (int64_t i = 0; i < n; i += 5 * c->shape[c->axis] + 3) v[i] = NAN;
    kiln_tensor *src = kiln_tensor_from_host(v, c->ndim, c->shape, KILN_F64, KILN_CPU);
    free(v);
    cr_assert_eq(kiln_tensor_copy_(x, src), KILN_STATUS_OK);
    return x;
}

static void keepdim(const ax_case *c, int64_t *ks) {
    for (int i = 0; i < c->ndim; i++) ks[i] = i == c->axis ? 1 : c->shape[i];
}

KT_TEST(cuda_emu_maxarg_concat, argmax_and_max_every_axis_and_layout) {
    char what[200];
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            const ax_case *c = &cases[k];
            kiln_tensor *x = input(dt, c, 20 + k);
            int64_t ks[4];
            keepdim(c, ks);
            kiln_axis_attrs at = {c->axis};
            snprintf(what, sizeof what, "argmax %s, %s", c->name, kiln_dtype_name(dt));
            ec_run(&kiln_op_argmax, kiln_cpu_argmax, kiln_emu_cuda_argmax, 1, &x, &at, KILN_I64, c->ndim, ks,
                   EC_CONTIG, true, 0, 0, what);
            /* max gathers at the CPU's indices */
            kiln_tensor *idx = kiln_tensor_zeros(c->ndim, ks, KILN_I64, KILN_CPU);
            kiln_op_call ac = {&kiln_op_argmax, 1, &x, idx, &at};
            cr_assert_eq(kiln_cpu_argmax(&ac), KILN_STATUS_OK);
            kiln_tensor *in[2] = {x, idx};
            snprintf(what, sizeof what, "max %s, %s", c->name, kiln_dtype_name(dt));
            ec_run(&kiln_op_max, kiln_cpu_max, kiln_emu_cuda_max, 2, in, &at, dt, c->ndim, ks, EC_CONTIG, true, 0, 0,
                   what);
            /* max_backward scatters g (laid out as the case where it is 2-d) to those indices */
            kiln_tensor *g = ec_input(dt, c->ndim, ks, c->ndim == 2 && c->l == EC_TRANSPOSED ? EC_TRANSPOSED : EC_CONTIG,
                                      -1, 1, 0, 50 + k);
            kiln_tensor *bin[2] = {g, idx};
            snprintf(what, sizeof what, "max_backward %s, %s", c->name, kiln_dtype_name(dt));
            ec_run(&kiln_op_max_backward, kiln_cpu_max_backward, kiln_emu_cuda_max_backward, 2, bin, &at, dt, c->ndim,
                   c->shape, EC_CONTIG, true, 0, 0, what);
            kiln_scope_end(s);
        }
    }
}

KT_TEST(cuda_emu_maxarg_concat, argmax_hand_checked) {
    /* ties go to the first index; the first NaN beats everything; -0 ties +0 */
    kiln_tensor *x = KT_F32(2, KT_SHAPE(4, 3), {1, 3, 3, 2, NAN, NAN, -0.0, 0.0, -1, -INFINITY, -INFINITY, -INFINITY});
    kiln_tensor *o = kiln_tensor_zeros(2, (const int64_t[]){4, 1}, KILN_I64, KILN_CPU);
    kiln_axis_attrs at = {1};
    kiln_op_call c = {&kiln_op_argmax, 1, &x, o, &at};
    cr_assert_eq(kiln_emu_cuda_argmax(&c), KILN_STATUS_OK);
    KT_EXPECT(o, 0, 0, {1, 1, 0, 0});
    /* the same on the warp path: a row of 40 with its maximum tied at 17 and 33 */
    double v[40];
    for (int i = 0; i < 40; i++) v[i] = i == 17 || i == 33 ? 5 : i % 5; /* the rest at most 4 */
    kiln_tensor *r = kiln_tensor_from_host(v, 2, (const int64_t[]){1, 40}, KILN_F64, KILN_CPU);
    kiln_tensor *o2 = kiln_tensor_zeros(2, (const int64_t[]){1, 1}, KILN_I64, KILN_CPU);
    kiln_op_call c2 = {&kiln_op_argmax, 1, &r, o2, &at};
    cr_assert_eq(kiln_emu_cuda_argmax(&c2), KILN_STATUS_OK);
    KT_EXPECT(o2, 0, 0, {17});
}

KT_TEST(cuda_emu_maxarg_concat, max_backward_of_an_expanded_gradient) {
    /* the gradient of sum(max(x, 1)) is a stride-0 ones tensor */
    const ax_case c = {"NCHW channels, expanded g", 4, {2, 7, 3, 43}, 1, EC_CONTIG};
    int64_t ks[4];
    keepdim(&c, ks);
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = input(dt, &c, 3);
        kiln_axis_attrs at = {1};
        kiln_tensor *idx = kiln_tensor_zeros(4, ks, KILN_I64, KILN_CPU);
        kiln_op_call ac = {&kiln_op_argmax, 1, &x, idx, &at};
        cr_assert_eq(kiln_cpu_argmax(&ac), KILN_STATUS_OK);
        kiln_tensor *g = kiln_expand(kiln_tensor_full(0, NULL, 1.5, dt, KILN_CPU), 4, ks);
        kiln_tensor *in[2] = {g, idx};
        ec_run(&kiln_op_max_backward, kiln_cpu_max_backward, kiln_emu_cuda_max_backward, 2, in, &at, dt, 4, c.shape,
               EC_CONTIG, true, 0, 0, "max_backward of an expanded gradient");
    }
}

/* ---- concat ---------------------------------------------------------------------- */
KT_TEST(cuda_emu_maxarg_concat, concat_every_dtype_axis_and_layout) {
    /* three inputs of sizes 5, 0 and 130 (or 7, 0, 3) along the axis, in different
     * layouts, into a contiguous and a transposed output */
    const kiln_dtype types[] = {KILN_F32, KILN_F64, KILN_I64, KILN_I32, KILN_U8, KILN_F16};
    char what[200];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (int axis = 0; axis < 2; axis++)
            for (int ol = 0; ol < 2; ol++) {
                kiln_scope *s = kiln_scope_begin();
                kiln_dtype dt = types[t];
                int64_t len[3] = {axis ? 5 : 7, 0, axis ? 130 : 3}, other = axis ? 37 : 129;
                kiln_tensor *in[3];
                for (int i = 0; i < 3; i++) {
                    int64_t sh[2] = {axis ? other : len[i], axis ? len[i] : other};
                    ec_layout l = i == 0 ? EC_TRANSPOSED : i == 2 ? EC_SLICED : EC_CONTIG;
                    in[i] = ec_input(dt, 2, sh, l, -100, 100, 0.25, 7 + i);
                }
                int64_t osh[2] = {axis ? other : len[0] + len[1] + len[2], axis ? len[0] + len[1] + len[2] : other};
                kiln_axis_attrs at = {axis};
                snprintf(what, sizeof what, "concat %s along axis %d into a %s output", kiln_dtype_name(dt), axis,
                         ol ? "transposed" : "contiguous");
                ec_run(&kiln_op_concat, kiln_cpu_concat, kiln_emu_cuda_concat, 3, in, &at, dt, 2, osh,
                       ol ? EC_TRANSPOSED : EC_CONTIG, true, 0, 0, what);
                kiln_scope_end(s);
            }
}

KT_TEST(cuda_emu_maxarg_concat, concat_of_expanded_and_permuted_inputs) {
    /* NCHW feature maps joined on channels (the U-Net skip): one an NHWC view, one
     * expanded from (1, 2, 1, 1) */
    const int64_t a[4] = {2, 3, 5, 43}, nhwc[4] = {2, 5, 43, 4}, small[4] = {1, 2, 1, 1}, bsh[4] = {2, 2, 5, 43};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *base = ec_input(dt, 4, nhwc, EC_CONTIG, -1, 1, 0, 4);
        kiln_tensor *in[3] = {ec_input(dt, 4, a, EC_CONTIG, -1, 1, 0, 5), kiln_permute(base, (const int[]){0, 3, 1, 2}),
                              kiln_expand(ec_input(dt, 4, small, EC_CONTIG, -1, 1, 0, 6), 4, bsh)};
        const int64_t osh[4] = {2, 9, 5, 43};
        kiln_axis_attrs at = {1};
        ec_run(&kiln_op_concat, kiln_cpu_concat, kiln_emu_cuda_concat, 3, in, &at, dt, 4, osh, EC_CONTIG, true, 0, 0,
               "concat of NCHW, permuted NHWC and expanded inputs on channels");
    }
}

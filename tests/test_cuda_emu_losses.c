/* The CUDA loss kernels (kernels/cuda/bce.cu, cross_entropy.cu) through the emulator against the
 * CPU kernels: bce and bce_with_logits forward and backward for every input they
 * differentiate, with and without (expanded) weights and pos_weight, every
 * reduction, on contiguous, NHWC-permuted and transposed inputs; cross_entropy and
 * nll_loss forward and backward with every combination of class weights,
 * ignore_index, label_smoothing, index or probability targets and reduction, over
 * NCHW (C = 7, thread per pixel), NHWC views (C = 7 and C = 40, warp per pixel),
 * (N,C) and (C) inputs; one_hot. Every combination runs on the main layouts, the
 * others with all options on (emulated launches are slow).
 * f32 cross_entropy on dense operands (contiguous x, target, g and out; not an (N,C)
 * row of 16+ classes) takes the float32 path on both sides (kernels/cpu/cross_entropy_f32.c,
 * ce32_* in cross_entropy.cu; which calls, kernels/cross_entropy_geometry.h's plan says);
 * cross_entropy_float_path runs it with dense g at every option,
 * at pixel counts that are not multiples of the CPU's 64-pixel blocks nor the 256-thread
 * CUDA blocks, and with C = 130 (the CPU computes exp again instead of keeping it); the
 * other cases (views, strided g, f64, (N,C) rows of 40, probabilities, nll_loss) keep
 * the general double path. float_paths_every_cpu_clone runs the CPU's SSE2, AVX2 and
 * AVX-512 clones of the f32 workers (KILN_CPU_ISA) against the same emulated kernels.
 * Tolerances: per-element results of the bce family are the CPU's float operations
 * (losses_math.h, kernels/fast_math.h for f32 bce_with_logits), bit for bit; so are
 * cross-entropy results on the thread path, which repeats the CPU's arithmetic (double
 * on the general path, float on the float32 path) in its order. Sums in another order
 * (the block reductions, the warp path's class sums, 'mean' divisors of weighted
 * targets) agree within 1e-12 relative + 1e-14 absolute (f64) and 2 ulp + 1e-15
 * absolute (f32: 2.4e-7 relative; the absolute part covers a double result near 0
 * rounded to float). Edge cases also against torch's values (tests/fixtures/gen_numerics.py):
 * cross_entropy at |x| = 1e4 and 1e17 on every path, bce_with_logits on confident logits,
 * bce's gradients at p = 0 and 1. */
#include "emu/emu_compare.h"
#include "kernels/cpu/losses.h"
#include "fixtures/numerics_ref.h"

#include <stdlib.h>
#include <string.h>

TestSuite(cuda_emu_losses, .init = kiln_test_setup, .fini = kiln_test_teardown);

extern const kiln_op_def kiln_op_bce;
extern const kiln_op_def kiln_op_bce_backward;
extern const kiln_op_def kiln_op_bce_with_logits;
extern const kiln_op_def kiln_op_bce_with_logits_backward;
extern const kiln_op_def kiln_op_cross_entropy;
extern const kiln_op_def kiln_op_cross_entropy_backward;
extern const kiln_op_def kiln_op_nll_loss;
extern const kiln_op_def kiln_op_nll_loss_backward;
extern const kiln_op_def kiln_op_one_hot;

kiln_status kiln_emu_cuda_bce(const kiln_op_call *call);
kiln_status kiln_emu_cuda_bce_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_bce_with_logits(const kiln_op_call *call);
kiln_status kiln_emu_cuda_bce_with_logits_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_cross_entropy(const kiln_op_call *call);
kiln_status kiln_emu_cuda_cross_entropy_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_nll_loss(const kiln_op_call *call);
kiln_status kiln_emu_cuda_nll_loss_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_one_hot(const kiln_op_call *call);

static const char *const red_names[3] = {"none", "mean", "sum"};

static double atol_of(kiln_dtype dt) { return dt == KILN_F64 ? 1e-14 : 1e-15; }
static double rtol_of(kiln_dtype dt) { return dt == KILN_F64 ? 1e-12 : 2.4e-7; }

/* A random 4-d input laid out as l: 0 contiguous, 1 an NCHW view of NHWC memory,
 * 2 the last two axes transposed. */
static kiln_tensor *input4(kiln_dtype dt, const int64_t *shape, int l, double lo, double hi, double quant,
                           uint64_t seed) {
    if (l == 1) {
        int64_t nhwc[4] = {shape[0], shape[2], shape[3], shape[1]};
        kiln_tensor *base = kiln_tensor_zeros(4, nhwc, dt, KILN_CPU);
        ec_fill_random(base, lo, hi, quant, seed);
        return kiln_permute(base, (const int[]){0, 3, 1, 2});
    }
    return ec_input(dt, 4, shape, l == 2 ? EC_TRANSPOSED : EC_CONTIG, lo, hi, quant, seed);
}
static const char *const layout4[3] = {"contiguous", "permuted NHWC", "transposed"};

/* ---- bce / bce_with_logits ------------------------------------------------------------ */
KT_TEST(cuda_emu_losses, bce_family_every_option) {
    const int64_t shape[4] = {2, 3, 5, 43}, wsmall[4] = {1, 3, 1, 1}; /* 1290 elements */
    char what[240];
    for (int d = 0; d < 2; d++)
        for (int logits = 0; logits < 2; logits++)
            for (int l = 0; l < 3; l++) {
                kiln_scope *s = kiln_scope_begin();
                kiln_dtype dt = d ? KILN_F64 : KILN_F32;
                /* probabilities on a 1/16 grid include 0 and 1 (the clamped logs) */
                kiln_tensor *x = logits ? input4(dt, shape, l, -6, 6, 0, 3) : input4(dt, shape, l, 0, 1.0625, 0.0625, 3);
                kiln_tensor *y = input4(dt, shape, (l + 1) % 3, 0, 1.25, 0.25, 4);
                kiln_tensor *weights[3] = {NULL, kiln_expand(ec_input(dt, 4, wsmall, EC_CONTIG, 0.5, 2, 0, 5), 4, shape),
                                           input4(dt, shape, 0, 0, 2, 0, 6)};
                kiln_tensor *pws[2] = {NULL, kiln_expand(ec_input(dt, 1, &shape[3], EC_CONTIG, 0.5, 3, 0, 7), 4, shape)};
                /* every weight combination on the contiguous input; the expanded ones on the others
                 * (the emulator is slow: each launch runs its threads as fibers) */
                for (int wi = l ? 1 : 0; wi < (l ? 2 : 3); wi++)
                    for (int pi = l ? logits : 0; pi < (logits ? 2 : 1); pi++)
                        for (int red = 0; red < 3; red++) {
                            kiln_bce_attrs at = {red, 0};
                            kiln_tensor *in[4] = {x, y, weights[wi], pws[pi]};
                            snprintf(what, sizeof what, "%s %s, x %s, weight %d, pos_weight %d, reduction %s",
                                     logits ? "bce_with_logits" : "bce", kiln_dtype_name(dt), layout4[l], wi, pi,
                                     red_names[red]);
                            if (logits)
                                ec_run(&kiln_op_bce_with_logits, kiln_cpu_bce_with_logits, kiln_emu_cuda_bce_with_logits,
                                       4, in, &at, dt, red ? 0 : 4, shape, EC_CONTIG, red == 0, atol_of(dt),
                                       rtol_of(dt), what);
                            else
                                ec_run(&kiln_op_bce, kiln_cpu_bce, kiln_emu_cuda_bce, 3, in, &at, dt, red ? 0 : 4,
                                       shape, EC_CONTIG, red == 0, atol_of(dt), rtol_of(dt), what);
                            /* backward for every input it differentiates; g 0-d or strided */
                            kiln_tensor *g = red ? ec_input(dt, 0, NULL, EC_CONTIG, -2, 2, 0, 8)
                                                 : input4(dt, shape, 2, -2, 2, 0, 9);
                            for (int wrt = 0; wrt < (logits ? 4 : 3); wrt++) {
                                if ((wrt == KILN_LOSS_WRT_WEIGHT && !weights[wi]) ||
                                    (wrt == KILN_LOSS_WRT_POS_WEIGHT && !pws[pi]))
                                    continue;
                                kiln_bce_attrs bat = {red, wrt};
                                kiln_tensor *bin[5] = {g, x, y, weights[wi], pws[pi]};
                                char bwhat[280];
                                snprintf(bwhat, sizeof bwhat, "%s backward wrt %d", what, wrt);
                                if (logits)
                                    ec_run(&kiln_op_bce_with_logits_backward, kiln_cpu_bce_with_logits_backward,
                                           kiln_emu_cuda_bce_with_logits_backward, 5, bin, &bat, dt, 4, shape,
                                           EC_CONTIG, true, 0, 0, bwhat);
                                else
                                    ec_run(&kiln_op_bce_backward, kiln_cpu_bce_backward, kiln_emu_cuda_bce_backward, 4,
                                           bin, &bat, dt, 4, shape, EC_CONTIG, true, 0, 0, bwhat);
                            }
                        }
                kiln_scope_end(s);
            }
}

static void expect_rel(const char *what, kiln_tensor *t, const double *want, int64_t n, double rtol) {
    double *v = kt_values(t);
    for (int64_t i = 0; i < n; i++) {
        double e = want[i] == 0 ? fabs(v[i]) : fabs(v[i] - want[i]) / fabs(want[i]);
        cr_expect(e <= rtol, "%s element %lld (x %g, y %g): emulated cuda %.9g, torch's definition %.17g", what,
                  (long long)i, bl_x[i], bl_y[i], v[i], want[i]);
    }
    free(v);
}

/* Confident logits (|x| up to 80, y 0, 1, 1/4; with and without pos_weight): the CPU's bits
 * (the float path when dense and unweighted, the general walk with pos_weight) and
 * torch's definition within test_bce.c's 3 ulps, loss and input gradient. */
KT_TEST(cuda_emu_losses, bce_with_logits_confident_logits_as_torch) {
    const int64_t n[1] = {BL_N};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double rtol = d ? 6.7e-16 : 3.6e-7;
        kiln_tensor *x = kt_tensor(dt, 1, n, bl_x), *y = kt_tensor(dt, 1, n, bl_y);
        for (int p = 0; p < 2; p++) {
            kiln_tensor *pw = p ? kiln_tensor_full(1, n, BL_PW, dt, KILN_CPU) : NULL;
            kiln_bce_attrs at = {0, 0};
            kiln_tensor *in[4] = {x, y, NULL, pw};
            ec_run(&kiln_op_bce_with_logits, kiln_cpu_bce_with_logits, kiln_emu_cuda_bce_with_logits, 4, in, &at, dt, 1,
                   n, EC_CONTIG, true, 0, 0, "bce_with_logits, confident logits");
            kiln_tensor *g = kiln_tensor_full(1, n, 1.0, dt, KILN_CPU);
            kiln_tensor *bin[5] = {g, x, y, NULL, pw};
            ec_run(&kiln_op_bce_with_logits_backward, kiln_cpu_bce_with_logits_backward,
                   kiln_emu_cuda_bce_with_logits_backward, 5, bin, &at, dt, 1, n, EC_CONTIG, true, 0, 0,
                   "bce_with_logits backward, confident logits");
            kiln_tensor *out = kiln_tensor_zeros(1, n, dt, KILN_CPU), *dx = kiln_tensor_zeros(1, n, dt, KILN_CPU);
            kiln_op_call fc = {&kiln_op_bce_with_logits, 4, in, out, &at};
            kiln_op_call bc = {&kiln_op_bce_with_logits_backward, 5, bin, dx, &at};
            cr_assert_eq(kiln_emu_cuda_bce_with_logits(&fc), KILN_STATUS_OK, "%s", kiln_last_error());
            cr_assert_eq(kiln_emu_cuda_bce_with_logits_backward(&bc), KILN_STATUS_OK, "%s", kiln_last_error());
            expect_rel(p ? "loss, pos_weight" : "loss", out, p ? bl_loss_pw : bl_loss, BL_N, rtol);
            expect_rel(p ? "gradient, pos_weight" : "gradient", dx, p ? bl_grad_pw : bl_grad, BL_N, rtol);
        }
    }
}

/* bce's input and target gradients at p = 0, 1 and nearby on the emulated kernel, every
 * reduction, with and without weights: torch 1.13's bits for the input (test_bce.c), its
 * infinities and 4 ulps for the target, and the CPU's bits for both. */
KT_TEST(cuda_emu_losses, bce_gradients_at_p_zero_and_one_as_torch) {
    const int64_t n[1] = {BCE_N};
    for (int d = 0; d < 2; d++)
        for (int r = 0; r < 3; r++)
            for (int uw = 0; uw < 2; uw++) {
                kiln_dtype dt = d ? KILN_F64 : KILN_F32;
                kiln_tensor *x = kt_tensor(dt, 1, n, bce_p), *y = kt_tensor(dt, 1, n, bce_y);
                kiln_tensor *w = uw ? kt_tensor(dt, 1, n, bce_w) : NULL;
                kiln_tensor *g = r ? kt_tensor(dt, 0, NULL, bce_g) : kt_tensor(dt, 1, n, bce_g);
                double ulp = d ? 0x1p-52 : 0x1p-23;
                for (int wrt = 0; wrt < 2; wrt++) {
                    kiln_bce_attrs at = {r, wrt};
                    kiln_tensor *bin[4] = {g, x, y, w};
                    char what[120];
                    snprintf(what, sizeof what, "bce backward wrt %s, %s, reduction %s, weight %d",
                             wrt ? "target" : "input", kiln_dtype_name(dt), red_names[r], uw);
                    ec_run(&kiln_op_bce_backward, kiln_cpu_bce_backward, kiln_emu_cuda_bce_backward, 4, bin, &at, dt, 1,
                           n, EC_CONTIG, true, 0, 0, what);
                    kiln_tensor *o = kiln_tensor_zeros(1, n, dt, KILN_CPU);
                    kiln_op_call c = {&kiln_op_bce_backward, 4, bin, o, &at};
                    cr_assert_eq(kiln_emu_cuda_bce_backward(&c), KILN_STATUS_OK, "%s", kiln_last_error());
                    double *v = kt_values(o);
                    const double *want = wrt ? bce_gy[d][r][uw] : bce_gx[d][r][uw];
                    for (int i = 0; i < BCE_N; i++) {
                        bool ok = wrt == 0 ? v[i] == want[i] && signbit(v[i]) == signbit(want[i])
                                  : isinf(want[i]) ? v[i] == want[i]
                                                   : fabs(v[i] - want[i]) <= 4 * ulp * fabs(want[i]);
                        cr_expect(ok, "%s, p %g y %g: emulated cuda %.17g, torch %.17g", what, bce_p[i], bce_y[i], v[i],
                                  want[i]);
                    }
                    free(v);
                }
            }
}

KT_TEST(cuda_emu_losses, bce_with_logits_hand_checked) {
    /* x = 0, y = 1: log 2 each; mean over 3 = log 2; huge logits stay finite */
    kiln_tensor *x = KT_F64(1, KT_SHAPE(3), {0, 0, 0}), *y = KT_F64(1, KT_SHAPE(3), {1, 1, 1});
    kiln_tensor *out = kiln_tensor_zeros(0, NULL, KILN_F64, KILN_CPU);
    kiln_tensor *in[4] = {x, y, NULL, NULL};
    kiln_bce_attrs at = {1, 0};
    kiln_op_call c = {&kiln_op_bce_with_logits, 4, in, out, &at};
    cr_assert_eq(kiln_emu_cuda_bce_with_logits(&c), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(out, 1e-15, 0, {0.69314718055994531});
    kiln_tensor *xb = KT_F32(1, KT_SHAPE(2), {1000, -1000}), *yb = KT_F32(1, KT_SHAPE(2), {0, 1});
    kiln_tensor *ob = kiln_tensor_zeros(1, (const int64_t[]){2}, KILN_F32, KILN_CPU);
    kiln_tensor *inb[4] = {xb, yb, NULL, NULL};
    kiln_bce_attrs none = {0, 0};
    kiln_op_call cb = {&kiln_op_bce_with_logits, 4, inb, ob, &none};
    cr_assert_eq(kiln_emu_cuda_bce_with_logits(&cb), KILN_STATUS_OK);
    KT_EXPECT(ob, 0, 0, {1000, 1000});
}

/* ---- cross_entropy / nll_loss ------------------------------------------------------------ */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    bool nhwc, warp;
} ce_case;

static const ce_case ce_cases[] = {
    {"NCHW 2x7x3x43 (thread per pixel)", 4, {2, 7, 3, 43}, false, false},
    {"NCHW view of NHWC, C=7 (thread per pixel)", 4, {2, 7, 3, 43}, true, false},
    {"NCHW view of NHWC, C=40 (warp per pixel)", 4, {1, 40, 3, 11}, true, true},
    {"(N,C) = (9,40) (warp per row)", 2, {9, 40}, false, true},
    {"(N,C) = (257,7) (thread per row)", 2, {257, 7}, false, false},
    {"(C) = (19)", 1, {19}, false, true},
    {"NCHW 1x130x3x5 (thread per pixel, float path: exp computed again)", 4, {1, 130, 3, 5}, false, false},
};

static kiln_tensor *ce_input(kiln_dtype dt, const ce_case *c, double lo, double hi, uint64_t seed) {
    if (c->nhwc) return input4(dt, c->shape, 1, lo, hi, 0, seed);
    return ec_input(dt, c->ndim, c->shape, EC_CONTIG, lo, hi, 0, seed);
}

/* Position shape: the input's shape without the class axis. */
static int pos_shape(const ce_case *c, int64_t *ps) {
    int cax = c->ndim == 1 ? 0 : 1, n = 0;
    for (int d = 0; d < c->ndim; d++)
        if (d != cax) ps[n++] = c->shape[d];
    return n;
}

/* Class indices in [0, C), every 4th set to ignore (when ignore >= 0) */
static kiln_tensor *index_target(const ce_case *c, int64_t ignore, uint64_t seed) {
    int64_t ps[4];
    int pn = pos_shape(c, ps);
    int64_t n = kiln__numel(pn, ps), C = c->shape[c->ndim == 1 ? 0 : 1];
    int64_t *v = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = (ignore >= 0 && i % 4 == 1) ? ignore : (int64_t)(ec_uniform(&seed) * C);
    kiln_tensor *t = kiln_tensor_from_host(v, pn, ps, KILN_I64, KILN_CPU);
    free(v);
    return t;
}

typedef struct {
    int weight, ignore, smooth, prob, red;
    int dense_g; /* reduction none: g 0 transposed, 1 contiguous, 2 one value expanded (1, 2: the
                  * float path) */
} ce_opts;

static void run_ce_case(const ce_case *c, kiln_dtype dt, const ce_opts *o, bool nll, uint64_t seed) {
    int cax = c->ndim == 1 ? 0 : 1;
    int64_t C = c->shape[cax], ps[4];
    int pn = pos_shape(c, ps);
    kiln_tensor *x = ce_input(dt, c, -3, 3, seed);
    kiln_tensor *w = o->weight ? ec_input(dt, 1, &C, EC_CONTIG, 0.25, 2, 0, seed + 1) : NULL;
    int64_t ignore = o->ignore ? 2 : -100;
    kiln_tensor *t = o->prob ? ce_input(dt, c, 0, 1, seed + 2) : index_target(c, o->ignore ? 2 : -1, seed + 3);
    kiln_ce_attrs at = {o->red, 0, o->prob, ignore, o->smooth ? 0.1 : 0.0};
    char what[300];
    snprintf(what, sizeof what, "%s %s %s: weight %d, ignore %d, smoothing %d, %s target, reduction %s",
             nll ? "nll_loss" : "cross_entropy", c->name, kiln_dtype_name(dt), o->weight, o->ignore, o->smooth,
             o->prob ? "probability" : "index", red_names[o->red]);
    kiln_tensor *in[3] = {x, t, w};
    bool exact_fwd = !c->warp && o->red == 0;
    ec_run(nll ? &kiln_op_nll_loss : &kiln_op_cross_entropy, nll ? kiln_cpu_nll_loss : kiln_cpu_cross_entropy,
           nll ? kiln_emu_cuda_nll_loss : kiln_emu_cuda_cross_entropy, 3, in, &at, dt, o->red ? 0 : pn, ps, EC_CONTIG,
           exact_fwd, atol_of(dt), rtol_of(dt), what);
    /* backward: g 0-d (reduced) or position-shaped and strided where it has two axes */
    kiln_tensor *g = o->red ? ec_input(dt, 0, NULL, EC_CONTIG, 0.5, 2, 0, seed + 4)
                     : o->dense_g == 2 ? kiln_expand(ec_input(dt, 0, NULL, EC_CONTIG, 0.5, 2, 0, seed + 6), pn, ps)
                                       : ec_input(dt, pn, ps, pn >= 2 && !o->dense_g ? EC_TRANSPOSED : EC_CONTIG, -2,
                                                  2, 0, seed + 5);
    bool weighted_mean = o->red == 1 && !o->prob && o->weight; /* the divisor is summed in another order */
    bool exact_bwd = !c->warp && !weighted_mean;
    for (int wrt = 0; wrt < (o->prob ? 2 : 1); wrt++) {
        kiln_ce_attrs bat = at;
        bat.wrt = wrt;
        kiln_tensor *bin[4] = {g, x, t, w};
        char bwhat[340];
        snprintf(bwhat, sizeof bwhat, "%s, backward wrt %s", what, wrt ? "target" : "input");
        ec_run(nll ? &kiln_op_nll_loss_backward : &kiln_op_cross_entropy_backward,
               nll ? kiln_cpu_nll_loss_backward : kiln_cpu_cross_entropy_backward,
               nll ? kiln_emu_cuda_nll_loss_backward : kiln_emu_cuda_cross_entropy_backward, 4, bin, &bat, dt,
               c->ndim, c->shape, EC_CONTIG, exact_bwd, atol_of(dt), rtol_of(dt), bwhat);
    }
}

/* Every combination on the NCHW thread-per-pixel case and the (N,C) warp case;
 * the other layouts with every option on at once, each reduction and target kind. */
KT_TEST(cuda_emu_losses, cross_entropy_every_option_and_layout) {
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof ce_cases / sizeof ce_cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            bool all = k == 0 || k == 3;
            for (int prob = 0; prob < 2; prob++)
                for (int weight = all ? 0 : 1; weight < 2; weight++)
                    for (int ignore = all || prob ? 0 : 1; ignore < (prob ? 1 : 2); ignore++)
                        for (int smooth = all ? 0 : 1; smooth < 2; smooth++)
                            for (int red = 0; red < 3; red++) {
                                ce_opts o = {weight, ignore, smooth, prob, red, 0};
                                run_ce_case(&ce_cases[k], d ? KILN_F64 : KILN_F32, &o, false, 100 + k);
                            }
            kiln_scope_end(s);
        }
}

/* The float32 path at every option with dense g (and, for 'none', g expanded from one
 * value, as the backward of a sum gives it): NCHW (2x7x3x43: 129 pixels per sample,
 * two 64-pixel blocks and one pixel), (N,C) rows of 7 (257 of them) and C = 130. */
KT_TEST(cuda_emu_losses, cross_entropy_float_path) {
    static const size_t cases[] = {0, 4, 6};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kiln_scope *s = kiln_scope_begin();
        const ce_case *c = &ce_cases[cases[k]];
        for (int weight = 0; weight < 2; weight++)
            for (int ignore = 0; ignore < 2; ignore++)
                for (int smooth = 0; smooth < 2; smooth++)
                    for (int red = 0; red < 4; red++) { /* 3: none with g expanded from one value */
                        ce_opts o = {weight, ignore, smooth, 0, red % 3, red == 3 ? 2 : 1};
                        run_ce_case(c, KILN_F32, &o, false, 300 + k);
                    }
        kiln_scope_end(s);
    }
}

/* The CPU's f32 workers are compiled for SSE2, AVX2 and AVX-512 (the widest the CPU has
 * runs; KILN_CPU_ISA caps it): each clone against the emulated kernels, bit for bit
 * per element, on the float paths of cross_entropy and bce_with_logits. */
KT_TEST(cuda_emu_losses, float_paths_every_cpu_clone) {
    static const char *const isas[3] = {"sse2", "avx2", "avx512"};
    const char *old = getenv("KILN_CPU_ISA");
    char *saved = old ? strdup(old) : NULL;
    const int64_t shape[4] = {2, 3, 5, 43};
    for (int k = 0; k < 3; k++) {
        setenv("KILN_CPU_ISA", isas[k], 1);
        kiln_scope *s = kiln_scope_begin();
        for (int red = 0; red < 3; red++) {
            ce_opts o = {1, 1, 1, 0, red, 1};
            run_ce_case(&ce_cases[0], KILN_F32, &o, false, 400 + k);
            ce_opts p = {0, 0, 0, 0, red, 1};
            run_ce_case(&ce_cases[0], KILN_F32, &p, false, 410 + k);
        }
        kiln_tensor *x = input4(KILN_F32, shape, 0, -30, 30, 0, 20), *y = input4(KILN_F32, shape, 0, 0, 1.25, 0.25, 21);
        kiln_tensor *g = input4(KILN_F32, shape, 0, -2, 2, 0, 22);
        for (int red = 0; red < 3; red++) {
            char what[120];
            snprintf(what, sizeof what, "bce_with_logits f32 flat, %s clone, reduction %s", isas[k], red_names[red]);
            kiln_bce_attrs at = {red, 0};
            kiln_tensor *in[4] = {x, y, NULL, NULL};
            ec_run(&kiln_op_bce_with_logits, kiln_cpu_bce_with_logits, kiln_emu_cuda_bce_with_logits, 4, in, &at,
                   KILN_F32, red ? 0 : 4, shape, EC_CONTIG, red == 0, atol_of(KILN_F32), rtol_of(KILN_F32), what);
            kiln_tensor *bin[5] = {red ? ec_input(KILN_F32, 0, NULL, EC_CONTIG, -2, 2, 0, 23) : g, x, y, NULL, NULL};
            ec_run(&kiln_op_bce_with_logits_backward, kiln_cpu_bce_with_logits_backward,
                   kiln_emu_cuda_bce_with_logits_backward, 5, bin, &at, KILN_F32, 4, shape, EC_CONTIG, true, 0, 0,
                   what);
        }
        kiln_scope_end(s);
    }
    if (saved) setenv("KILN_CPU_ISA", saved, 1);
    else unsetenv("KILN_CPU_ISA");
    free(saved);
}

KT_TEST(cuda_emu_losses, nll_loss_every_option_and_layout) {
    for (int d = 0; d < 2; d++)
        for (size_t k = 0; k < sizeof ce_cases / sizeof ce_cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            bool all = k == 0 || k == 3;
            for (int weight = all ? 0 : 1; weight < 2; weight++)
                for (int ignore = all ? 0 : 1; ignore < 2; ignore++)
                    for (int red = 0; red < 3; red++) {
                        ce_opts o = {weight, ignore, 0, 0, red, 0};
                        run_ce_case(&ce_cases[k], d ? KILN_F64 : KILN_F32, &o, true, 200 + k);
                    }
            kiln_scope_end(s);
        }
}

KT_TEST(cuda_emu_losses, cross_entropy_hand_checked) {
    /* logits [0, 0] with target 1: loss log 2; mean over two rows, the second ignored,
     * divides by the weight of the first only: w1 * log 2 / w1 = log 2; the gradient
     * of row 0 is (softmax - onehot) * w1 / w1 = [0.5, -0.5], row 1 zero */
    kiln_tensor *x = KT_F64(2, KT_SHAPE(2, 2), {0, 0, 5, -5});
    int64_t tv[2] = {1, 7};
    kiln_tensor *t = kiln_tensor_from_host(tv, 1, (const int64_t[]){2}, KILN_I64, KILN_CPU);
    kiln_tensor *w = KT_F64(1, KT_SHAPE(2), {0.5, 3});
    kiln_tensor *out = kiln_tensor_zeros(0, NULL, KILN_F64, KILN_CPU);
    kiln_tensor *in[3] = {x, t, w};
    kiln_ce_attrs at = {1, 0, 0, 7, 0.0};
    kiln_op_call c = {&kiln_op_cross_entropy, 3, in, out, &at};
    cr_assert_eq(kiln_emu_cuda_cross_entropy(&c), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(out, 1e-15, 0, {0.69314718055994531});
    kiln_tensor *g = KT_F64(0, KT_SHAPE(0), {1});
    kiln_tensor *dx = kiln_tensor_zeros(2, (const int64_t[]){2, 2}, KILN_F64, KILN_CPU);
    kiln_tensor *bin[4] = {g, x, t, w};
    kiln_op_call bc = {&kiln_op_cross_entropy_backward, 4, bin, dx, &at};
    cr_assert_eq(kiln_emu_cuda_cross_entropy_backward(&bc), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(dx, 1e-15, 0, {0.5, -0.5, 0, 0});
}

/* One 'none' cross_entropy (dloss = 1) on the emulated kernels: the CPU's results (bit for bit
 * unless warp) and torch's within tol. */
static void ce_torch(const char *what, kiln_tensor *x, kiln_tensor *t, double ls, const double *loss, const double *dx,
                     bool warp, double tol) {
    kiln_dtype dt = kiln_tensor_dtype(x);
    int64_t ps[4]; /* the position shape: x's without the class axis (1) */
    for (int i = 0, j = 0; i < kiln_tensor_ndim(x); i++)
        if (i != 1) ps[j++] = kiln_tensor_shape(x)[i];
    bool prob = kiln_tensor_dtype(t) != KILN_I64;
    int npn = kiln_tensor_ndim(x) - 1;
    kiln_ce_attrs at = {0, 0, prob, -100, ls};
    kiln_tensor *in[3] = {x, t, NULL};
    ec_run(&kiln_op_cross_entropy, kiln_cpu_cross_entropy, kiln_emu_cuda_cross_entropy, 3, in, &at, dt, npn, ps,
           EC_CONTIG, !warp, atol_of(dt), rtol_of(dt), what);
    kiln_tensor *g = kiln_tensor_full(npn, ps, 1.0, dt, KILN_CPU);
    kiln_tensor *bin[4] = {g, x, t, NULL};
    ec_run(&kiln_op_cross_entropy_backward, kiln_cpu_cross_entropy_backward, kiln_emu_cuda_cross_entropy_backward, 4,
           bin, &at, dt, kiln_tensor_ndim(x), kiln_tensor_shape(x), EC_CONTIG, !warp, atol_of(dt), rtol_of(dt), what);
    kiln_tensor *out = kiln_tensor_zeros(npn, ps, dt, KILN_CPU), *gx = kiln_tensor_zeros(kiln_tensor_ndim(x),
                                                                                      kiln_tensor_shape(x), dt, KILN_CPU);
    kiln_op_call fc = {&kiln_op_cross_entropy, 3, in, out, &at}, bc = {&kiln_op_cross_entropy_backward, 4, bin, gx, &at};
    cr_assert_eq(kiln_emu_cuda_cross_entropy(&fc), KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
    cr_assert_eq(kiln_emu_cuda_cross_entropy_backward(&bc), KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
    int64_t nl = kiln_tensor_numel(out), nx = kiln_tensor_numel(gx);
    kt_expect_values(out, loss, nl, tol, tol);
    kt_expect_values(gx, dx, nx, tol, tol);
}

/* Large logits on every path: the general double path (f64, f32 rows of 20 classes: warp),
 * the float32 path (f32 rows of 4, f32 pixels), probability targets with smoothing. The
 * 1e17 row: loss log 2, gradient [0.5, -0.5, 0, 0]. test_cross_entropy.c's tolerances. */
KT_TEST(cuda_emu_losses, cross_entropy_large_logits_as_torch) {
    const int64_t rc[2] = {4, 4}, wide[2] = {4, 20}, pix[4] = {1, 4, 2, 2}, n4[1] = {4}, p22[3] = {1, 2, 2};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double tol = d ? 1e-15 : 1e-6;
        kiln_tensor *t = kiln_tensor_from_host(ls_t, 1, n4, KILN_I64, KILN_CPU);
        ce_torch("(N,C) large logits", kt_tensor(dt, 2, rc, ls_x), t, 0, d ? ls_ce_loss_f64 : ls_ce_loss_f32,
                 d ? ls_ce_dx_f64 : ls_ce_dx_f32, false, tol);
        ce_torch("(N,C) of 20 large logits", kt_tensor(dt, 2, wide, ls_wide_x), t, 0,
                 d ? ls_ce_wide_loss_f64 : ls_ce_wide_loss_f32, d ? ls_ce_wide_dx_f64 : ls_ce_wide_dx_f32, true, tol);
        kiln_tensor *xp = kiln_tensor_contiguous(kiln_reshape(kiln_transpose(kt_tensor(dt, 2, rc, ls_x), 0, 1), 4, pix));
        ce_torch("(N,C,H,W) large logits", xp, kiln_reshape(t, 3, p22), 0, d ? ls_pix_loss_f64 : ls_pix_loss_f32,
                 d ? ls_pix_dx_f64 : ls_pix_dx_f32, false, tol);
        ce_torch("probability targets, large logits", kt_tensor(dt, 2, rc, ls_x),
                 kt_tensor(dt, 2, rc, d ? ls_prob_t_f64 : ls_prob_t_f32), 0.1, d ? ls_prob_loss_f64 : ls_prob_loss_f32,
                 d ? ls_prob_dx_f64 : ls_prob_dx_f32, false, tol);
    }
}

KT_TEST(cuda_emu_losses, reduced_losses_are_deterministic) {
    /* no atomics: two runs of the block reduction agree bit for bit */
    const ce_case *c = &ce_cases[0];
    kiln_tensor *x = ce_input(KILN_F32, c, -3, 3, 1);
    kiln_tensor *t = index_target(c, -1, 2);
    kiln_tensor *o1 = kiln_tensor_zeros(0, NULL, KILN_F32, KILN_CPU), *o2 = kiln_tensor_zeros(0, NULL, KILN_F32, KILN_CPU);
    kiln_tensor *in[3] = {x, t, NULL};
    kiln_ce_attrs at = {1, 0, 0, -100, 0.1};
    kiln_op_call c1 = {&kiln_op_cross_entropy, 3, in, o1, &at}, c2 = {&kiln_op_cross_entropy, 3, in, o2, &at};
    cr_assert_eq(kiln_emu_cuda_cross_entropy(&c1), KILN_STATUS_OK);
    cr_assert_eq(kiln_emu_cuda_cross_entropy(&c2), KILN_STATUS_OK);
    ec_compare(o1, o2, true, 0, 0, "two runs");
}

/* ---- one_hot ------------------------------------------------------------------------ */
KT_TEST(cuda_emu_losses, one_hot_contiguous_and_strided_targets) {
    const ce_case c = {"2x7x3x43", 4, {2, 7, 3, 43}, false, false}, ct = {"2x7x43x3", 4, {2, 7, 43, 3}, false, false};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_one_hot_attrs at = {7};
        kiln_tensor *t = index_target(&c, -1, 9);
        ec_run(&kiln_op_one_hot, kiln_cpu_one_hot, kiln_emu_cuda_one_hot, 1, &t, &at, dt, 4, c.shape, EC_CONTIG, true,
               0, 0, "one_hot of contiguous targets");
        kiln_tensor *tt = kiln_transpose(index_target(&ct, -1, 10), 1, 2); /* (2, 3, 43), strided */
        ec_run(&kiln_op_one_hot, kiln_cpu_one_hot, kiln_emu_cuda_one_hot, 1, &tt, &at, dt, 4, c.shape, EC_CONTIG, true,
               0, 0, "one_hot of transposed targets");
    }
}

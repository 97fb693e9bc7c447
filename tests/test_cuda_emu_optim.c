/* The fused CUDA optimizer and clipping kernels (kernels/cuda/optimizer.cu), reached
 * through the entry points optim/optimizer.c and optim/clip.c call for CUDA tensors,
 * run by the emulator against the CPU kernels: sgd (momentum, dampening, nesterov,
 * weight decay, maximize), adam, adamw and amsgrad over several steps, f32 and f64,
 * at spans that are not multiples of the 256-thread block. Both sides run the same
 * per-element math (kernels/optim_math.h) on the same host libm, so updates agree bit
 * for bit; norms are sums in another order: 1e-12 relative. */
#include "emu/emu_compare.h"
#include "../kernels/cpu/optim.h"
#include "../kernels/cuda/launch_optimizer.h"

TestSuite(cuda_emu_optim, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* n random values in [lo, hi) of dtype dt, as raw host memory. */
static void *span(kiln_dtype dt, int64_t n, double lo, double hi, uint64_t seed) {
    size_t es = kiln_dtype_size(dt);
    char *p = malloc(es * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        double v = lo + (hi - lo) * ec_uniform(&seed);
        if (dt == KILN_F32) ((float *)p)[i] = (float)v;
        else ((double *)p)[i] = v;
    }
    return p;
}

static void *dup(const void *p, kiln_dtype dt, int64_t n) {
    size_t bytes = kiln_dtype_size(dt) * (size_t)(n ? n : 1);
    void *q = malloc(bytes);
    memcpy(q, p, bytes);
    return q;
}

static void same_bits(const void *a, const void *b, kiln_dtype dt, int64_t n, const char *what) {
    size_t es = kiln_dtype_size(dt);
    for (int64_t i = 0; i < n; i++)
        if (memcmp((const char *)a + i * (int64_t)es, (const char *)b + i * (int64_t)es, es) != 0) {
            double x = dt == KILN_F32 ? ((const float *)a)[i] : ((const double *)a)[i];
            double y = dt == KILN_F32 ? ((const float *)b)[i] : ((const double *)b)[i];
            cr_assert_fail("%s: element %lld: cpu %.17g, emulated cuda %.17g", what, (long long)i, x, y);
        }
}

static const int64_t sizes[] = {1003, 4099, 1};

KT_TEST(cuda_emu_optim, sgd_every_option_bit_for_bit) {
    static const struct {
        const char *name;
        double momentum, dampening, weight_decay;
        int nesterov, maximize;
    } cases[] = {{"plain", 0, 0, 0, 0, 0},
                 {"momentum 0.9, dampening 0.1, weight decay 1e-2", 0.9, 0.1, 1e-2, 0, 0},
                 {"nesterov", 0.9, 0, 0, 1, 0},
                 {"maximize with weight decay", 0, 0, 5e-3, 0, 1}};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
            for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
                int64_t n = sizes[z];
                void *pc = span(dt, n, -1, 1, 1 + k), *pe = dup(pc, dt, n);
                void *bc = span(dt, n, 0, 0, 0), *be = dup(bc, dt, n);
                for (int t = 1; t <= 3; t++) {
                    void *g = span(dt, n, -1, 1, 100 * t + k);
                    kiln_sgd_hparams h = {0.05, cases[k].momentum, cases[k].dampening, cases[k].weight_decay,
                                          cases[k].nesterov, cases[k].maximize, t == 1};
                    void *bufc = cases[k].momentum != 0 ? bc : NULL, *bufe = cases[k].momentum != 0 ? be : NULL;
                    kiln_cpu_sgd_update(dt, pc, g, bufc, n, &h);
                    cr_assert_eq(kiln_emu_cuda_sgd_update(KILN_CPU, dt, pe, g, bufe, n, &h), KILN_STATUS_OK, "%s",
                                 kiln_last_error());
                    char what[160];
                    snprintf(what, sizeof what, "sgd %s, n %lld, step %d, %s", cases[k].name, (long long)n, t,
                             kiln_dtype_name(dt));
                    same_bits(pc, pe, dt, n, what);
                    same_bits(bc, be, dt, n, what);
                    free(g);
                }
                free(pc);
                free(pe);
                free(bc);
                free(be);
            }
    }
}

KT_TEST(cuda_emu_optim, adam_adamw_amsgrad_bit_for_bit) {
    static const struct {
        const char *name;
        double weight_decay;
        int decoupled, amsgrad, maximize;
    } cases[] = {{"adam", 0, 0, 0, 0},
                 {"adam with L2 weight decay", 1e-2, 0, 0, 0},
                 {"adamw", 1e-2, 1, 0, 0},
                 {"adamw amsgrad", 1e-2, 1, 1, 0},
                 {"adam amsgrad maximize", 0, 0, 1, 1}};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
            for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
                int64_t n = sizes[z];
                void *st[2][4];
                st[0][0] = span(dt, n, -1, 1, 7 + k);
                for (int j = 1; j < 4; j++) st[0][j] = span(dt, n, 0, 0, 0);
                for (int j = 0; j < 4; j++) st[1][j] = dup(st[0][j], dt, n);
                for (int t = 1; t <= 4; t++) {
                    void *g = span(dt, n, -1, 1, 300 * t + k);
                    kiln_adam_hparams h = {1e-3, 0.9, 0.999, 1e-8, cases[k].weight_decay, cases[k].decoupled,
                                           cases[k].amsgrad, cases[k].maximize};
                    h.step_size = h.lr / (1 - pow(h.beta1, t));
                    h.bc2_sqrt = sqrt(1 - pow(h.beta2, t));
                    kiln_cpu_adam_update(dt, st[0][0], g, st[0][1], st[0][2], cases[k].amsgrad ? st[0][3] : NULL, n,
                                         &h);
                    cr_assert_eq(kiln_emu_cuda_adam_update(KILN_CPU, dt, st[1][0], g, st[1][1], st[1][2],
                                                           cases[k].amsgrad ? st[1][3] : NULL, n, &h),
                                 KILN_STATUS_OK, "%s", kiln_last_error());
                    char what[160];
                    for (int j = 0; j < 4; j++) {
                        snprintf(what, sizeof what, "%s, n %lld, step %d, state %d, %s", cases[k].name, (long long)n,
                                 t, j, kiln_dtype_name(dt));
                        same_bits(st[0][j], st[1][j], dt, n, what);
                    }
                    free(g);
                }
                for (int j = 0; j < 4; j++) {
                    free(st[0][j]);
                    free(st[1][j]);
                }
            }
    }
}

KT_TEST(cuda_emu_optim, grad_norm_matches_the_cpu) {
    const double types[] = {2, 1, 3.5, INFINITY};
    const int64_t ns[] = {20003, 1003, 1, 0};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t q = 0; q < sizeof types / sizeof types[0]; q++)
            for (size_t z = 0; z < sizeof ns / sizeof ns[0]; z++) {
                void *g = span(dt, ns[z], -2, 2, 9 + z);
                double cpu = kiln_cpu_norm_accumulate(dt, g, ns[z], types[q]), emu = -1;
                cr_assert_eq(kiln_emu_cuda_norm_accumulate(KILN_CPU, dt, g, ns[z], types[q], &emu), KILN_STATUS_OK,
                             "%s", kiln_last_error());
                cr_expect(fabs(cpu - emu) <= 1e-12 * fabs(cpu), "norm %g of %lld %s: cpu %.17g, emulated cuda %.17g",
                          types[q], (long long)ns[z], kiln_dtype_name(dt), cpu, emu);
                free(g);
            }
    }
}

KT_TEST(cuda_emu_optim, grad_norm_spreads_nan) {
    for (int q = 0; q < 2; q++) {
        double type = q ? INFINITY : 2;
        double *g = span(KILN_F64, 1003, -1, 1, 5);
        g[700] = NAN;
        double v = 0;
        cr_assert_eq(kiln_emu_cuda_norm_accumulate(KILN_CPU, KILN_F64, g, 1003, type, &v), KILN_STATUS_OK);
        cr_expect(isnan(v) && isnan(kiln_cpu_norm_accumulate(KILN_F64, g, 1003, type)), "norm %g: %g", type, v);
        free(g);
    }
}

KT_TEST(cuda_emu_optim, scale_and_clamp_bit_for_bit) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        int64_t n = 1029;
        void *a = span(dt, n, -3, 3, 11), *b = dup(a, dt, n);
        if (dt == KILN_F32) ((float *)a)[5] = ((float *)b)[5] = NAN;
        else ((double *)a)[5] = ((double *)b)[5] = NAN;
        kiln_cpu_scale(dt, a, n, 0.37);
        cr_assert_eq(kiln_emu_cuda_scale(KILN_CPU, dt, b, n, 0.37), KILN_STATUS_OK);
        same_bits(a, b, dt, n, "scale");
        kiln_cpu_clamp(dt, a, n, -0.5, 0.25);
        cr_assert_eq(kiln_emu_cuda_clamp(KILN_CPU, dt, b, n, -0.5, 0.25), KILN_STATUS_OK);
        same_bits(a, b, dt, n, "clamp (NaN stays NaN)");
        free(a);
        free(b);
    }
}

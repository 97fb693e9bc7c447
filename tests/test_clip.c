/* Gradient clipping against torch.nn.utils.clip_grad_norm_ / clip_grad_value_
 * (tests/fixtures/clip_ref.h), on separate gradients and on one gradient arena. */
#include "support/kiln_test.h"
#include "core/internal.h"
#include "fixtures/clip_ref.h"

TestSuite(clip, .init = kiln_test_setup, .fini = kiln_test_teardown);

kiln_tensor *kiln__new_owned(const kiln_tensor *like);

/* f64: kiln sums in double like torch, to rounding. f32: torch rounds each
 * per-tensor norm and the coefficient to float, kiln keeps double: a few ulps. */
#define TOL64 1e-13
#define TOL32 1e-6

static const int64_t SH[3][2] = {{3, 2}, {5, 1}, {2, 2}};
static const int NDIM[3] = {2, 1, 2}, OFF[3] = {0, 6, 11};

typedef struct {
    kiln_tensor *p[3];
    kiln_tensor *garena;
} grads;

static grads make(kiln_dtype dt, bool arena) {
    grads G = {0};
    size_t es = kiln_dtype_size(dt);
    if (arena) G.garena = kt_tensor(dt, 1, (int64_t[]){CLIP_NUMEL}, clip_grads);
    for (int i = 0; i < 3; i++) {
        G.p[i] = kiln_tensor_zeros(NDIM[i], SH[i], dt, KILN_CPU);
        kiln_tensor_set_requires_grad(G.p[i], true);
        if (arena) {
            int64_t st[2];
            kiln__contiguous_strides(NDIM[i], SH[i], es, st);
            G.p[i]->grad = kiln__view(G.garena, NDIM[i], SH[i], st, OFF[i] * (int64_t)es);
        } else {
            G.p[i]->grad = kiln__new_owned(G.p[i]);
            kiln_tensor_copy_(G.p[i]->grad, kt_tensor(dt, NDIM[i], SH[i], clip_grads + OFF[i]));
        }
    }
    return G;
}

static void release(grads *G) {
    if (G->garena)
        for (int i = 0; i < 3; i++) G->p[i]->grad = NULL;
}

static void expect_grads(const char *name, grads *G, const double *e, double tol) {
    for (int i = 0; i < 3; i++) {
        double *v = kt_values(G->p[i]->grad);
        for (int k = 0; k < kiln_tensor_numel(G->p[i]); k++)
            cr_expect(fabs(v[k] - e[OFF[i] + k]) <= tol + tol * fabs(e[OFF[i] + k]),
                      "%s: gradient %d element %d: %.17g, torch %.17g", name, i, k, v[k], e[OFF[i] + k]);
        free(v);
    }
}

static void check(kiln_dtype dt, bool arena) {
    for (int c = 0; c < CLIP_NCASES; c++) {
        const clip_case *cc = &clip_cases[c];
        kiln_scope *s = kiln_scope_begin();
        grads G = make(dt, arena);
        double total = kiln_clip_grad_norm(G.p, 3, cc->max_norm, cc->norm_type);
        double want = dt == KILN_F64 ? cc->total64 : cc->total32, tol = dt == KILN_F64 ? TOL64 : TOL32;
        cr_expect(fabs(total - want) <= tol + tol * want, "%s: total norm %.17g, torch %.17g", cc->name, total, want);
        expect_grads(cc->name, &G, dt == KILN_F64 ? cc->g64 : cc->g32, tol);
        release(&G);
        kiln_scope_end(s);
    }
}

KT_TEST(clip, grad_norm_f64) { check(KILN_F64, false); }
KT_TEST(clip, grad_norm_f32) { check(KILN_F32, false); }
KT_TEST(clip, grad_norm_on_a_gradient_arena) {
    check(KILN_F64, true);
    check(KILN_F32, true);
}

KT_TEST(clip, grad_value) {
    for (int arena = 0; arena < 2; arena++) {
        grads G = make(KILN_F64, arena);
        cr_expect_eq(kiln_clip_grad_value(G.p, 3, 0.75), KILN_STATUS_OK, "%s", kiln_last_error());
        expect_grads("clip_grad_value", &G, clip_value_075, 0);
        release(&G);
    }
}

KT_TEST(clip, parameters_without_gradients_are_skipped) {
    kiln_tensor *p[2] = {KT_F64(1, KT_SHAPE(2), {0, 0}), KT_F64(1, KT_SHAPE(2), {0, 0})};
    kiln_tensor_set_requires_grad(p[0], true);
    kiln_tensor_set_requires_grad(p[1], true);
    cr_expect_eq(kiln_clip_grad_norm(p, 2, 1.0, 2.0), 0.0, "no gradients: norm 0 as torch");
    /* gradient of sum(7p) on p[1] only: [7, 7], norm 7*sqrt(2) */
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul_scalar(p[1], 7)), NULL), KILN_STATUS_OK);
    double total = kiln_clip_grad_norm(p, 2, 1.0, 2.0);
    cr_expect(fabs(total - 7 * sqrt(2)) < 1e-14);
    double c = 1.0 / (7 * sqrt(2) + 1e-6);
    KT_EXPECT(kiln_tensor_grad(p[1]), 1e-15, 1e-14, {7 * c, 7 * c});
    cr_expect_null(kiln_tensor_grad(p[0]));
}

KT_TEST(clip, errors) {
    kiln_tensor *p = KT_F64(1, KT_SHAPE(2), {0, 0});
    cr_expect(isnan(kiln_clip_grad_norm(&p, 1, 1.0, 0)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "norm_type");
    cr_expect(isnan(kiln_clip_grad_norm(&p, 1, NAN, 2)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "max_norm");
    kiln_tensor *withnull[] = {p, NULL};
    cr_expect(isnan(kiln_clip_grad_norm(withnull, 2, 1, 2)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "parameter 1 is NULL");
    cr_expect_eq(kiln_clip_grad_value(&p, 1, -1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "clip_value");
}

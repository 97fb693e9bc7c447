/* Optimizers against torch.optim (tests/fixtures/optim_ref.h): three steps of every
 * sgd/adam/adamw variant in float64 and float32, on separate tensors and on one
 * parameter arena (the fused path), state export, resume from a checkpoint, errors. */
#include "support/kiln_test.h"
#include "core/internal.h"
#include "fixtures/optim_ref.h"

#include <stdlib.h>
#include <unistd.h>

TestSuite(optim, .init = kiln_test_setup, .fini = kiln_test_teardown);

kiln_tensor *kiln__new_owned(const kiln_tensor *like);

/* Both follow torch's operation order: float64 agrees to an ulp or two (torch may fuse a
 * multiply-add), float32 measured within 1e-7 on these values; tolerances are abs + rel. */
#define TOL64 1e-13
#define TOL32 5e-7

static const int64_t P0_SHAPE[] = {2, 3}, P1_SHAPE[] = {4};

typedef struct {
    kiln_tensor *p[2];
    kiln_tensor *arena, *garena; /* NULL unless the parameters are views of one arena */
    kiln_dtype dt;
} params;

static params make_params(kiln_dtype dt, bool arena) {
    params P = {.dt = dt};
    kiln_tensor *init = kt_tensor(dt, 1, (int64_t[]){OPT_NUMEL}, opt_init);
    if (arena) {
        P.arena = kiln_tensor_clone(init);
        P.garena = kiln_tensor_zeros(1, (int64_t[]){OPT_NUMEL}, dt, KILN_CPU);
        size_t es = kiln_dtype_size(dt);
        int64_t s0[2], s1[1];
        kiln__contiguous_strides(2, P0_SHAPE, es, s0);
        kiln__contiguous_strides(1, P1_SHAPE, es, s1);
        P.p[0] = kiln__view(P.arena, 2, P0_SHAPE, s0, 0);
        P.p[1] = kiln__view(P.arena, 1, P1_SHAPE, s1, 6 * (int64_t)es);
        /* the module layer points each .grad into its gradient arena the same way */
        P.p[0]->grad = kiln__view(P.garena, 2, P0_SHAPE, s0, 0);
        P.p[1]->grad = kiln__view(P.garena, 1, P1_SHAPE, s1, 6 * (int64_t)es);
    } else {
        P.p[0] = kiln_tensor_clone(kiln_reshape(kiln_slice(init, 0, 0, 6, 1), 2, P0_SHAPE));
        P.p[1] = kiln_tensor_clone(kiln_slice(init, 0, 6, 10, 1));
    }
    for (int i = 0; i < 2; i++) kiln_tensor_set_requires_grad(P.p[i], true);
    return P;
}

/* Arena grads are views owned by the test scope, not by the parameter. */
static void release_params(params *P) {
    if (P->arena)
        for (int i = 0; i < 2; i++) P->p[i]->grad = NULL;
}

/* Gives parameter i the gradient values g (NULL: no gradient, as p.grad = None). */
static void set_grad(params *P, int i, const double *g) {
    kiln_tensor *p = P->p[i];
    int64_t n = kiln_tensor_numel(p);
    if (P->arena) {
        size_t es = kiln_dtype_size(P->dt);
        int64_t st[2];
        kiln__contiguous_strides(p->ndim, p->shape, es, st);
        if (!g) {
            p->grad = NULL;
            return;
        }
        if (!p->grad) p->grad = kiln__view(P->garena, p->ndim, p->shape, st, (i ? 6 : 0) * (int64_t)es);
    } else {
        if (!g) {
            kiln_tensor_free(p->grad);
            p->grad = NULL;
            return;
        }
        if (!p->grad) p->grad = kiln__new_owned(p);
    }
    kiln_tensor *src = kt_tensor(P->dt, p->ndim, p->shape, g);
    cr_assert_eq(kiln_tensor_copy_(p->grad, src), KILN_STATUS_OK, "%s", kiln_last_error());
    (void)n;
}

static kiln_optimizer *make_opt(const opt_case *c, kiln_tensor *const *p) {
    if (!strcmp(c->kind, "sgd")) {
        kiln_sgd_options o = {c->lr, c->momentum, c->dampening, c->weight_decay, c->nesterov, c->maximize};
        return kiln_optim_sgd(p, 2, o);
    }
    kiln_adam_options o = {c->lr, c->beta1, c->beta2, c->eps, c->weight_decay, c->amsgrad, c->maximize};
    return !strcmp(c->kind, "adam") ? kiln_optim_adam(p, 2, o) : kiln_optim_adamw(p, 2, o);
}

static void expect_close(const char *what, const char *name, int step, const kiln_tensor *a, const kiln_tensor *b,
                         const double *expected, double tol) {
    double *va = kt_values(a), *vb = kt_values(b);
    for (int k = 0; k < OPT_NUMEL; k++) {
        double v = k < 6 ? va[k] : vb[k - 6], e = expected[k];
        cr_expect(fabs(v - e) <= tol + tol * fabs(e), "%s %s step %d element %d: got %.17g, torch %.17g", what, name,
                  step + 1, k, v, e);
    }
    free(va);
    free(vb);
}

static void run_steps(const opt_case *c, params *P, kiln_optimizer *o, int from, int to) {
    for (int s = from; s < to; s++) {
        for (int i = 0; i < 2; i++) set_grad(P, i, (s == c->skip_step && i == 1) ? NULL : opt_grads[s] + (i ? 6 : 0));
        cr_assert_eq(kiln_optimizer_step(o), KILN_STATUS_OK, "%s: %s", c->name, kiln_last_error());
    }
}

static void check_case(const opt_case *c, kiln_dtype dt, bool arena) {
    kiln_scope *s = kiln_scope_begin();
    params P = make_params(dt, arena);
    kiln_optimizer *o = make_opt(c, P.p);
    cr_assert(o, "%s: %s", c->name, kiln_last_error());
    for (int st = 0; st < OPT_STEPS; st++) {
        run_steps(c, &P, o, st, st + 1);
        expect_close(dt == KILN_F64 ? "f64" : "f32", c->name, st, P.p[0], P.p[1], dt == KILN_F64 ? c->p64[st] : c->p32[st],
                     dt == KILN_F64 ? TOL64 : TOL32);
    }
    cr_expect_eq(kiln_optimizer_step_count(o), OPT_STEPS);
    /* fused: every step where all gradients exist, when the parameters form an arena */
    bool sgd = !strcmp(c->kind, "sgd");
    int64_t want = !arena ? 0 : c->skip_step < 0 ? OPT_STEPS : sgd ? OPT_STEPS - 1 : c->skip_step;
    cr_expect_eq(kiln_optimizer_fused_updates(o), want, "%s: %lld fused updates, expected %lld", c->name,
                 (long long)kiln_optimizer_fused_updates(o), (long long)want);
    release_params(&P);
    kiln_optimizer_free(o);
    kiln_scope_end(s);
}

KT_TEST(optim, every_case_f64_matches_torch) {
    for (int i = 0; i < OPT_NCASES; i++) check_case(&opt_cases[i], KILN_F64, false);
}

KT_TEST(optim, every_case_f32_matches_torch) {
    for (int i = 0; i < OPT_NCASES; i++) check_case(&opt_cases[i], KILN_F32, false);
}

KT_TEST(optim, arena_parameters_take_the_fused_path) {
    for (int i = 0; i < OPT_NCASES; i++) {
        check_case(&opt_cases[i], KILN_F64, true);
        check_case(&opt_cases[i], KILN_F32, true);
    }
}

static const opt_case *find_case(const char *name) {
    for (int i = 0; i < OPT_NCASES; i++)
        if (!strcmp(opt_cases[i].name, name)) return &opt_cases[i];
    cr_assert_fail("no fixture case %s", name);
    return NULL;
}

KT_TEST(optim, exported_state_matches_torch_state) {
    const char *names[] = {"sgd_dampening_wd", "adam_betas_wd", "adam_skip_maximize", "adamw_amsgrad"};
    for (int n = 0; n < 4; n++) {
        const opt_case *c = find_case(names[n]);
        params P = make_params(KILN_F64, false);
        kiln_optimizer *o = make_opt(c, P.p);
        run_steps(c, &P, o, 0, OPT_STEPS);
        kiln_named_tensor st[16];
        int k = kiln_optimizer_state(o, st, 16);
        int per = !strcmp(c->kind, "sgd") ? 2 : 3 + c->amsgrad;
        cr_assert_eq(k, 2 * per, "%s: %d state entries", c->name, k);
        cr_expect_str_eq(st[per].name, "state.1.step");
        cr_expect_str_eq(st[1].name, !strcmp(c->kind, "sgd") ? "state.0.momentum_buffer" : "state.0.exp_avg");
        if (c->amsgrad) cr_expect_str_eq(st[3].name, "state.0.max_exp_avg_sq");
        expect_close("state1", c->name, OPT_STEPS - 1, st[1].tensor, st[per + 1].tensor, c->state1, TOL64);
        if (per > 2) expect_close("state2", c->name, OPT_STEPS - 1, st[2].tensor, st[per + 2].tensor, c->state2, TOL64);
        KT_EXPECT_SHAPE(st[1].tensor, 2, 2, 3);
        if (strcmp(c->kind, "sgd")) KT_EXPECT(st[per].tensor, 0, 0, {c->step_p1});
        kiln_optimizer_free(o);
    }
}

/* Interrupt after one step, checkpoint parameters + optimizer state + metadata,
 * rebuild everything from the file and continue: the result is bit-identical to
 * the uninterrupted run. */
static void resume_case(const char *name, bool arena) {
    const opt_case *c = find_case(name);
    char dir[] = "/tmp/kiln_optim_XXXXXX";
    cr_assert(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);

    params A = make_params(KILN_F64, arena);
    kiln_optimizer *oa = make_opt(c, A.p);
    run_steps(c, &A, oa, 0, 1);
    kiln_named_tensor all[20] = {{"p0", A.p[0]}, {"p1", A.p[1]}};
    int ns = kiln_optimizer_state(oa, all + 2, 18);
    kiln_metadata_entry meta[12];
    int nm = kiln_optimizer_metadata(oa, meta, 12);
    cr_assert(ns > 0 && nm > 0, "%s", kiln_last_error());
    cr_assert_eq(kiln_safetensors_save(path, all, 2 + ns, meta, nm), KILN_STATUS_OK, "%s", kiln_last_error());
    run_steps(c, &A, oa, 1, OPT_STEPS);

    params B = make_params(KILN_F64, arena);
    kiln_tensor_fill(B.p[0], 123); /* overwritten by the load */
    kiln_optimizer *ob = make_opt(c, B.p);
    kiln_optimizer_set_lr(ob, 99); /* restored from the metadata */
    kiln_named_tensor into[20] = {{"p0", B.p[0]}, {"p1", B.p[1]}};
    cr_assert_eq(kiln_optimizer_state(ob, into + 2, 18), ns);
    cr_assert_eq(kiln_safetensors_load(path, into, 2 + ns, true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s", kiln_last_error());
    const kiln_metadata_entry *fm;
    int nfm = kiln_safetensors_metadata(f, &fm);
    cr_assert_eq(kiln_optimizer_load_metadata(ob, fm, nfm), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_safetensors_close(f);
    cr_expect_eq(kiln_optimizer_get_lr(ob), c->lr);
    cr_expect_eq(kiln_optimizer_step_count(ob), 1);
    run_steps(c, &B, ob, 1, OPT_STEPS);
    expect_close("resumed", c->name, OPT_STEPS - 1, B.p[0], B.p[1], c->p64[OPT_STEPS - 1], TOL64);
    double *a0 = kt_values(A.p[0]), *b0 = kt_values(B.p[0]), *a1 = kt_values(A.p[1]), *b1 = kt_values(B.p[1]);
    cr_expect(!memcmp(a0, b0, 6 * sizeof(double)) && !memcmp(a1, b1, 4 * sizeof(double)),
              "%s: the resumed run is not bit-identical to the uninterrupted one", c->name);
    free(a0), free(b0), free(a1), free(b1);
    cr_expect_eq(kiln_optimizer_step_count(ob), OPT_STEPS);
    release_params(&A);
    release_params(&B);
    kiln_optimizer_free(oa);
    kiln_optimizer_free(ob);
    unlink(path);
    rmdir(dir);
}

KT_TEST(optim, resume_from_checkpoint_continues_exactly) {
    resume_case("adam_amsgrad", false);
    resume_case("adamw", true);
    resume_case("sgd_nesterov_wd", true);
    resume_case("sgd_maximize_skip", false);
}

KT_TEST(optim, metadata_of_another_kind_is_refused) {
    params P = make_params(KILN_F32, false);
    kiln_optimizer *o = kiln_optim_adam(P.p, 2, kiln_adam_defaults());
    kiln_metadata_entry m[] = {{"optimizer", "sgd"}, {"lr", "0.5"}};
    cr_expect_eq(kiln_optimizer_load_metadata(o, m, 2), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "sgd");
    kiln_metadata_entry bad[] = {{"lr", "fast"}};
    cr_expect_eq(kiln_optimizer_load_metadata(o, bad, 1), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "lr");
    cr_expect_eq(kiln_optimizer_get_lr(o), 1e-3, "a refused load changes nothing");
    kiln_metadata_entry ok[] = {{"lr", "0.25"}, {"betas", "0.5,0.75"}, {"step", "7"}, {"unknown", "x"}};
    cr_expect_eq(kiln_optimizer_load_metadata(o, ok, 4), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_optimizer_get_lr(o), 0.25);
    cr_expect_eq(kiln_optimizer_step_count(o), 7);
    kiln_optimizer_free(o);
}

KT_TEST(optim, lr_get_set_and_defaults) {
    params P = make_params(KILN_F32, false);
    kiln_optimizer *o = kiln_optim_sgd(P.p, 2, kiln_sgd_defaults());
    cr_expect_eq(kiln_optimizer_get_lr(o), 1e-3);
    cr_expect_str_eq(kiln_optimizer_kind(o), "sgd");
    cr_expect_eq(kiln_optimizer_set_lr(o, 0.5), KILN_STATUS_OK);
    cr_expect_eq(kiln_optimizer_get_lr(o), 0.5);
    /* torch's param_groups take any lr once built (its schedulers may set a negative one) */
    cr_expect_eq(kiln_optimizer_set_lr(o, -1), KILN_STATUS_OK);
    cr_expect_eq(kiln_optimizer_get_lr(o), -1);
    cr_expect_eq(kiln_optimizer_set_lr(o, NAN), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "lr");
    cr_expect_eq(kiln_optimizer_set_lr(o, INFINITY), KILN_STATUS_INVALID_ARGUMENT);
    cr_expect_eq(kiln_optimizer_set_lr(o, 0.5), KILN_STATUS_OK);
    /* one sgd step with lr 0.5 is p - 0.5 g */
    set_grad(&P, 0, opt_grads[0]);
    set_grad(&P, 1, opt_grads[0] + 6);
    cr_assert_eq(kiln_optimizer_step(o), KILN_STATUS_OK);
    double e[OPT_NUMEL];
    for (int k = 0; k < OPT_NUMEL; k++) e[k] = (double)((float)opt_init[k] - 0.5f * (float)opt_grads[0][k]);
    expect_close("lr 0.5", "sgd", 0, P.p[0], P.p[1], e, 1e-7);
    kiln_adam_options w = kiln_adamw_defaults();
    cr_expect(w.weight_decay == 1e-2 && w.beta1 == 0.9 && w.beta2 == 0.999 && w.eps == 1e-8 && w.lr == 1e-3);
    cr_expect_eq(kiln_adam_defaults().weight_decay, 0);
    kiln_optimizer_free(o);
}

KT_TEST(optim, zero_grad_clears_arena_and_separate_grads) {
    for (int arena = 0; arena < 2; arena++) {
        params P = make_params(KILN_F64, arena);
        set_grad(&P, 0, opt_grads[0]);
        set_grad(&P, 1, opt_grads[0] + 6);
        kiln_optimizer *o = kiln_optim_adam(P.p, 2, kiln_adam_defaults());
        kiln_optimizer_zero_grad(o);
        KT_EXPECT(P.p[0]->grad, 0, 0, {0, 0, 0, 0, 0, 0});
        KT_EXPECT(P.p[1]->grad, 0, 0, {0, 0, 0, 0});
        release_params(&P);
        kiln_optimizer_free(o);
    }
}

KT_TEST(optim, no_gradients_means_no_update) {
    params P = make_params(KILN_F64, false);
    kiln_optimizer *o = kiln_optim_adam(P.p, 2, kiln_adam_defaults());
    cr_expect_eq(kiln_optimizer_step(o), KILN_STATUS_OK);
    cr_expect_eq(kiln_optimizer_step_count(o), 0);
    KT_EXPECT(P.p[1], 0, 0, {opt_init[6], opt_init[7], opt_init[8], opt_init[9]});
    kiln_optimizer_free(o);
}

/* A leaf that is a transposed view: updated through a contiguous copy. */
KT_TEST(optim, strided_parameter) {
    kiln_tensor *base = KT_F64(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *p = kiln_transpose(base, 0, 1); /* [3,2]: 1 4 / 2 5 / 3 6 */
    cr_assert(p && !kiln_tensor_is_contiguous(p));
    kiln_tensor_set_requires_grad(p, true);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(p, p)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_optimizer *o = kiln_optim_sgd(&p, 1, (kiln_sgd_options){.lr = 0.25});
    cr_assert_eq(kiln_optimizer_step(o), KILN_STATUS_OK, "%s", kiln_last_error());
    /* p - 0.25 * 2p = p / 2, seen through the base */
    KT_EXPECT(base, 0, 0, {0.5, 1, 1.5, 2, 2.5, 3});
    kiln_optimizer_free(o);
}

KT_TEST(optim, errors_name_the_problem) {
    params P = make_params(KILN_F32, false);
    cr_expect_null(kiln_optim_sgd(P.p, 0, kiln_sgd_defaults()));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "empty parameter list");
    kiln_tensor *mixed[] = {P.p[0], KT_F64(1, KT_SHAPE(2), {1, 2})};
    cr_expect_null(kiln_optim_adam(mixed, 2, kiln_adam_defaults()));
    kt_expect_error(KILN_STATUS_DTYPE, "one dtype");
    kiln_tensor *ints[] = {kiln_tensor_zeros(1, (int64_t[]){2}, KILN_I64, KILN_CPU)};
    cr_expect_null(kiln_optim_adam(ints, 1, kiln_adam_defaults()));
    kt_expect_error(KILN_STATUS_DTYPE, "float");
    kiln_tensor *withnull[] = {P.p[0], NULL};
    cr_expect_null(kiln_optim_adamw(withnull, 2, kiln_adamw_defaults()));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "parameter 1 is NULL");
    kiln_tensor *dup[] = {P.p[0], P.p[0]};
    cr_expect_null(kiln_optim_adam(dup, 2, kiln_adam_defaults()));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "same tensor");
    cr_expect_null(kiln_optim_sgd(P.p, 2, (kiln_sgd_options){.lr = 0.1, .nesterov = true}));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "nesterov");
    kiln_adam_options a = kiln_adam_defaults();
    a.beta2 = 1.0;
    cr_expect_null(kiln_optim_adam(P.p, 2, a));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "beta2");
    a = kiln_adam_defaults();
    a.lr = -1;
    cr_expect_null(kiln_optim_adam(P.p, 2, a));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "lr");

    kiln_optimizer *o = kiln_optim_adam(P.p, 2, kiln_adam_defaults());
    P.p[0]->grad = kiln__new_owned(P.p[1]); /* a [4] gradient on a [2,3] parameter */
    kiln_tensor_fill(P.p[0]->grad, 1);
    cr_expect_eq(kiln_optimizer_step(o), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "parameter 0");
    kiln_named_tensor small[1];
    cr_expect_eq(kiln_optimizer_state(o, small, 1), -1);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "cap 0");
    cr_expect_eq(kiln_optimizer_state(o, NULL, 0), 6);
    cr_expect_eq(kiln_optimizer_step(NULL), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    kiln_optimizer_free(o);
    kiln_optimizer_free(NULL);
}

/* Above the OpenMP threshold: the fused arena pass (threads over 100k elements) and
 * the per-parameter passes compute the same bits, element-wise math being order-free. */
KT_TEST(optim, large_arena_fused_equals_per_parameter) {
    const int64_t n0 = 60000, n1 = 40001, n = n0 + n1;
    kiln_tensor *init = kiln_tensor_randn(1, &n, 0, 1, KILN_F32, KILN_CPU);
    kiln_tensor *gv = kiln_tensor_randn(1, &n, 0, 1, KILN_F32, KILN_CPU);
    kiln_tensor *arena = kiln_tensor_clone(init), *garena = kiln_tensor_clone(gv);
    kiln_tensor *a[2] = {kiln__view(arena, 1, &n0, (int64_t[]){4}, 0), kiln__view(arena, 1, &n1, (int64_t[]){4}, n0 * 4)};
    a[0]->grad = kiln__view(garena, 1, &n0, (int64_t[]){4}, 0);
    a[1]->grad = kiln__view(garena, 1, &n1, (int64_t[]){4}, n0 * 4);
    kiln_tensor *s[2] = {kiln_tensor_clone(kiln_slice(init, 0, 0, n0, 1)), kiln_tensor_clone(kiln_slice(init, 0, n0, n, 1))};
    for (int i = 0; i < 2; i++) {
        s[i]->grad = kiln__new_owned(s[i]);
        kiln_tensor_copy_(s[i]->grad, kiln_slice(gv, 0, i ? n0 : 0, i ? n : n0, 1));
    }
    kiln_adam_options o = kiln_adamw_defaults();
    o.amsgrad = true;
    kiln_optimizer *oa = kiln_optim_adamw(a, 2, o), *os = kiln_optim_adamw(s, 2, o);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(kiln_optimizer_step(oa), KILN_STATUS_OK);
        cr_assert_eq(kiln_optimizer_step(os), KILN_STATUS_OK);
    }
    cr_expect_eq(kiln_optimizer_fused_updates(oa), 3);
    cr_expect_eq(kiln_optimizer_fused_updates(os), 0);
    const float *pa = kiln_tensor_data(arena);
    cr_expect(!memcmp(pa, kiln_tensor_data(s[0]), (size_t)n0 * 4) &&
              !memcmp(pa + n0, kiln_tensor_data(s[1]), (size_t)n1 * 4), "fused and per-parameter updates differ");
    a[0]->grad = a[1]->grad = NULL;
    kiln_optimizer_free(oa);
    kiln_optimizer_free(os);
}

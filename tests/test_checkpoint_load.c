/* kiln_checkpoint_load is all-or-nothing: a checkpoint with any bad part (optimizer
 * metadata, a step count, a missing or misshapen tensor, the RNG position, a
 * truncated file) fails with a clear error and leaves every parameter, buffer,
 * optimizer state tensor, hyper-parameter, step count and the generator as they were. */
#include "support/kiln_test.h"

#include <stdlib.h>
#include <unistd.h>

TestSuite(checkpoint_load, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* conv + batch norm (running stats and an i64 counter as buffers) + linear, AMSGrad
 * Adam (all three moment tensors), trained a few steps so that nothing is zero. */
typedef struct {
    kiln_module *net;
    kiln_optimizer *opt;
    kiln_tensor *x, *y;
} rig;

static rig make_rig_on(kiln_device dev, bool sgd) {
    rig r;
    kiln_manual_seed(3);
    r.net = kiln_sequential_create();
    kiln_sequential_append(r.net, kiln_conv2d_create(2, 3, 1, 1, 0, true, KILN_F32));
    kiln_sequential_append(r.net, kiln_batch_norm2d_create(3, KILN_F32));
    kiln_sequential_append(r.net, kiln_relu_create());
    kiln_sequential_append(r.net, kiln_flatten_create(1, -1));
    kiln_sequential_append(r.net, kiln_linear_create(12, 1, true, KILN_F32));
    cr_assert_eq(kiln_module_finalize(r.net), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_module_to(r.net, dev), KILN_STATUS_OK, "%s", kiln_last_error());
    int n = kiln_module_num_parameters(r.net);
    kiln_tensor *params[16];
    cr_assert(n <= 16);
    for (int i = 0; i < n; i++) params[i] = kiln_module_parameter(r.net, i, NULL);
    if (sgd) {
        kiln_sgd_options o = kiln_sgd_defaults();
        o.lr = 0.01;
        o.momentum = 0.9;
        o.dampening = 0.1;
        r.opt = kiln_optim_sgd(params, n, o);
    } else {
        kiln_adam_options o = kiln_adam_defaults();
        o.amsgrad = true;
        o.lr = 0.01;
        r.opt = kiln_optim_adam(params, n, o);
    }
    cr_assert(r.opt, "%s", kiln_last_error());
    r.x = kiln_scope_keep(kiln_tensor_to(kiln_tensor_randn(4, (int64_t[]){4, 2, 2, 2}, 0, 1, KILN_F32, KILN_CPU), dev));
    r.y = kiln_scope_keep(kiln_tensor_to(kiln_tensor_rand(2, (int64_t[]){4, 1}, 0, 1, KILN_F32, KILN_CPU), dev));
    cr_assert(r.x && r.y, "%s", kiln_last_error());
    return r;
}


static void free_rig(rig *r) {
    kiln_optimizer_free(r->opt);
    kiln_module_free(r->net);
    kiln_tensor_free(r->x);
    kiln_tensor_free(r->y);
}

static void train(rig *r, int steps) {
    for (int i = 0; i < steps; i++) {
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *loss = kiln_mse_loss(kiln_module_forward(r->net, r->x), r->y, KILN_REDUCTION_MEAN);
        kiln_optimizer_zero_grad(r->opt);
        cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_optimizer_step(r->opt), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_scope_end(s);
    }
}

/* ---- everything a load could change, as labelled byte strings ------------------------- */

typedef struct {
    int n;
    char *label[128];
    unsigned char *bytes[128];
    size_t len[128];
} snapshot;

static void snap_add(snapshot *s, const char *label, const void *b, size_t n) {
    cr_assert(s->n < 128);
    s->label[s->n] = strdup(label);
    s->bytes[s->n] = malloc(n ? n : 1);
    memcpy(s->bytes[s->n], b, n);
    s->len[s->n++] = n;
}

static void snap_tensor(snapshot *s, const char *label, kiln_tensor *t) {
    size_t n = (size_t)kiln_tensor_numel(t) * kiln_dtype_size(kiln_tensor_dtype(t));
    unsigned char *b = malloc(n ? n : 1);
    cr_assert_eq(kiln_tensor_to_host(t, b, n), KILN_STATUS_OK, "%s", kiln_last_error());
    snap_add(s, label, b, n);
    free(b);
}

static snapshot take(rig *r) {
    snapshot s = {0};
    kiln_scope *sc = kiln_scope_begin();
    for (int i = 0; i < kiln_module_num_state(r->net); i++) {
        const char *name;
        kiln_tensor *t = kiln_module_state(r->net, i, &name, NULL);
        snap_tensor(&s, name, t);
    }
    int k = kiln_optimizer_state(r->opt, NULL, 0);
    kiln_named_tensor st[64];
    cr_assert(k > 0 && k <= 64);
    cr_assert_eq(kiln_optimizer_state(r->opt, st, k), k);
    for (int i = 0; i < k; i++) snap_tensor(&s, st[i].name, st[i].tensor);
    kiln_scope_end(sc);
    kiln_metadata_entry meta[16];
    int nm = kiln_optimizer_metadata(r->opt, meta, 16);
    cr_assert(nm > 0);
    for (int i = 0; i < nm; i++) snap_add(&s, meta[i].key, meta[i].value, strlen(meta[i].value));
    double lr = kiln_optimizer_get_lr(r->opt);
    int64_t steps = kiln_optimizer_step_count(r->opt);
    uint64_t rng[2];
    kiln_rng_get_state(&rng[0], &rng[1]);
    snap_add(&s, "get_lr", &lr, sizeof lr);
    snap_add(&s, "step_count", &steps, sizeof steps);
    snap_add(&s, "rng state", rng, sizeof rng);
    return s;
}

static void snap_free(snapshot *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->label[i]);
        free(s->bytes[i]);
    }
    s->n = 0;
}

/* The label of the first entry that differs, or NULL when a and b are identical. */
static const char *snap_diff(const snapshot *a, const snapshot *b) {
    if (a->n != b->n) return "the number of entries";
    for (int i = 0; i < a->n; i++)
        if (strcmp(a->label[i], b->label[i]) || a->len[i] != b->len[i] || memcmp(a->bytes[i], b->bytes[i], a->len[i]))
            return a->label[i];
    return NULL;
}

/* ---- corrupted copies of a good checkpoint ---------------------------------------------- */

typedef struct {
    const char *label;
    const char *meta_key, *meta_value; /* set that metadata entry (value NULL: remove it) */
    const char *drop;                  /* remove this tensor */
    const char *reshape;               /* give this tensor one more element */
    const char *retype;                /* store this tensor as f64 */
    const char *add;                   /* add an extra tensor of this name */
    const char *poke;                  /* set the first element of this f32 tensor to value */
    double value;
    kiln_status want;
    const char *needle; /* the error message names this */
} variant;

/* Rewrites the checkpoint at src to dst with one change. */
static void write_variant(const char *src, const char *dst, const variant *v) {
    kiln_scope *sc = kiln_scope_begin();
    kiln_safetensors *f = kiln_safetensors_open(src);
    cr_assert(f, "%s", kiln_last_error());
    int n = kiln_safetensors_count(f);
    kiln_named_tensor *ts = calloc((size_t)n + 1, sizeof *ts);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *name = kiln_safetensors_entry_at(f, i)->name;
        if (v->drop && !strcmp(name, v->drop)) continue;
        kiln_tensor *t = kiln_safetensors_read(f, name);
        cr_assert(t, "%s", kiln_last_error());
        if (v->reshape && !strcmp(name, v->reshape))
            t = kiln_tensor_zeros(1, (int64_t[]){kiln_tensor_numel(t) + 1}, kiln_tensor_dtype(t), KILN_CPU);
        if (v->retype && !strcmp(name, v->retype)) t = kiln_tensor_cast(t, KILN_F64);
        if (v->poke && !strcmp(name, v->poke)) {
            cr_assert_eq(kiln_tensor_dtype(t), KILN_F32);
            ((float *)kiln_tensor_data(t))[0] = (float)v->value;
        }
        ts[k++] = (kiln_named_tensor){name, t};
    }
    if (v->add) ts[k++] = (kiln_named_tensor){v->add, kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU)};
    const kiln_metadata_entry *all;
    int nm = kiln_safetensors_metadata(f, &all);
    kiln_metadata_entry meta[32];
    int m = 0;
    bool set = false;
    for (int i = 0; i < nm; i++) {
        if (v->meta_key && !strcmp(all[i].key, v->meta_key)) {
            set = true;
            if (v->meta_value) meta[m++] = (kiln_metadata_entry){all[i].key, v->meta_value};
        } else {
            meta[m++] = all[i];
        }
    }
    cr_assert(!v->meta_key || set, "%s: the checkpoint has no metadata '%s'", v->label, v->meta_key);
    cr_assert_eq(kiln_safetensors_save(dst, ts, k, meta, m), KILN_STATUS_OK, "%s", kiln_last_error());
    free(ts);
    kiln_safetensors_close(f);
    kiln_scope_end(sc);
}

static const variant g_variants[] = {
    {"infinite lr", .meta_key = "optimizer.lr", .meta_value = "inf", .want = KILN_STATUS_FORMAT, .needle = "lr"},
    {"lr with junk", .meta_key = "optimizer.lr", .meta_value = "0.001x", .want = KILN_STATUS_FORMAT, .needle = "lr"},
    {"unparsable lr", .meta_key = "optimizer.lr", .meta_value = "fast", .want = KILN_STATUS_FORMAT, .needle = "lr"},
    {"kind 'sgd '", .meta_key = "optimizer.optimizer", .meta_value = "sgd ", .want = KILN_STATUS_FORMAT,
     .needle = "sgd "},
    {"kind sgd", .meta_key = "optimizer.optimizer", .meta_value = "sgd", .want = KILN_STATUS_FORMAT, .needle = "sgd"},
    {"no kind", .meta_key = "optimizer.optimizer", .want = KILN_STATUS_FORMAT, .needle = "optimizer.optimizer"},
    {"negative step", .meta_key = "optimizer.step", .meta_value = "-1", .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.step"},
    {"fractional step", .meta_key = "optimizer.step", .meta_value = "2.5", .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.step"},
    {"step past int64", .meta_key = "optimizer.step", .meta_value = "99999999999999999999",
     .want = KILN_STATUS_FORMAT, .needle = "optimizer.step"},
    {"no step", .meta_key = "optimizer.step", .want = KILN_STATUS_FORMAT, .needle = "optimizer.step"},
    {"step below the parameters' steps", .meta_key = "optimizer.step", .meta_value = "1", .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.state.0.step"},
    {"one beta", .meta_key = "optimizer.betas", .meta_value = "0.9", .want = KILN_STATUS_FORMAT, .needle = "betas"},
    {"beta2 above 1", .meta_key = "optimizer.betas", .meta_value = "0.9,1.5", .want = KILN_STATUS_FORMAT,
     .needle = "beta2"},
    {"negative eps", .meta_key = "optimizer.eps", .meta_value = "-1e-8", .want = KILN_STATUS_FORMAT, .needle = "eps"},
    {"NaN eps", .meta_key = "optimizer.eps", .meta_value = "nan", .want = KILN_STATUS_FORMAT, .needle = "eps"},
    {"negative weight decay", .meta_key = "optimizer.weight_decay", .meta_value = "-0.1", .want = KILN_STATUS_FORMAT,
     .needle = "weight_decay"},
    {"amsgrad off", .meta_key = "optimizer.amsgrad", .meta_value = "false", .want = KILN_STATUS_FORMAT,
     .needle = "amsgrad"},
    {"maximize not a bool", .meta_key = "optimizer.maximize", .meta_value = "yes", .want = KILN_STATUS_FORMAT,
     .needle = "maximize"},
    {"rng seed not a number", .meta_key = "kiln.rng_seed", .meta_value = "abc", .want = KILN_STATUS_FORMAT,
     .needle = "kiln.rng_seed"},
    {"negative rng offset", .meta_key = "kiln.rng_offset", .meta_value = "-5", .want = KILN_STATUS_FORMAT,
     .needle = "kiln.rng_offset"},
    {"rng offset past uint64", .meta_key = "kiln.rng_offset", .meta_value = "18446744073709551616",
     .want = KILN_STATUS_FORMAT, .needle = "kiln.rng_offset"},
    {"rng seed without offset", .meta_key = "kiln.rng_offset", .want = KILN_STATUS_FORMAT, .needle = "kiln.rng_offset"},
    {"missing moment", .drop = "optimizer.state.0.exp_avg", .want = KILN_STATUS_SHAPE,
     .needle = "optimizer.state.0.exp_avg"},
    {"missing max moment", .drop = "optimizer.state.3.max_exp_avg_sq", .want = KILN_STATUS_SHAPE,
     .needle = "optimizer.state.3.max_exp_avg_sq"},
    {"missing step tensor", .drop = "optimizer.state.2.step", .want = KILN_STATUS_SHAPE,
     .needle = "optimizer.state.2.step"},
    {"missing buffer", .drop = "1.running_mean", .want = KILN_STATUS_SHAPE, .needle = "1.running_mean"},
    {"missing counter", .drop = "1.num_batches_tracked", .want = KILN_STATUS_SHAPE, .needle = "1.num_batches_tracked"},
    {"missing weight", .drop = "4.weight", .want = KILN_STATUS_SHAPE, .needle = "4.weight"},
    {"moment of the wrong shape", .reshape = "optimizer.state.1.exp_avg_sq", .want = KILN_STATUS_SHAPE,
     .needle = "optimizer.state.1.exp_avg_sq"},
    {"weight of the wrong shape", .reshape = "0.weight", .want = KILN_STATUS_SHAPE, .needle = "0.weight"},
    {"weight of the wrong dtype", .retype = "4.bias", .want = KILN_STATUS_SHAPE, .needle = "4.bias"},
    {"unexpected tensor", .add = "5.weight", .want = KILN_STATUS_SHAPE, .needle = "5.weight"},
    {"negative step tensor", .poke = "optimizer.state.0.step", .value = -1, .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.state.0.step"},
    {"NaN step tensor", .poke = "optimizer.state.1.step", .value = NAN, .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.state.1.step"},
    {"fractional step tensor", .poke = "optimizer.state.2.step", .value = 2.5, .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.state.2.step"},
    {"step tensor past the step count", .poke = "optimizer.state.3.step", .value = 1e6, .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.state.3.step"},
    {"negative second moment", .poke = "optimizer.state.0.exp_avg_sq", .value = -1, .want = KILN_STATUS_FORMAT,
     .needle = "optimizer.state.0.exp_avg_sq"},
    {"negative max second moment", .poke = "optimizer.state.1.max_exp_avg_sq", .value = -0.5,
     .want = KILN_STATUS_FORMAT, .needle = "optimizer.state.1.max_exp_avg_sq"},
};
#define N_VARIANTS ((int)(sizeof g_variants / sizeof g_variants[0]))

/* A good checkpoint after 3 steps, then 2 more steps and a different generator
 * position, so a load that wrote anything would show. */
static rig trained_with_checkpoint_on(const char *path, kiln_device dev, bool sgd) {
    rig r = make_rig_on(dev, sgd);
    train(&r, 3);
    cr_assert_eq(kiln_checkpoint_save(path, r.net, r.opt, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    train(&r, 2);
    kiln_rng_set_state(987654321, 4242);
    return r;
}

static rig trained_with_checkpoint(const char *path) { return trained_with_checkpoint_on(path, KILN_CPU, false); }

/* Expects r to hold exactly the state in before (what names the case in the message). */
static void expect_unchanged(rig *r, const snapshot *before, const char *what) {
    snapshot after = take(r);
    const char *diff = snap_diff(before, &after);
    cr_expect_null(diff, "%s: the failed load changed %s", what, diff);
    snap_free(&after);
}

/* A strict load of path into r's model and opt (NULL: the model only) fails with want and a
 * message naming needle, and changes nothing. */
static void expect_load_fails(rig *r, kiln_optimizer *opt, const char *path, kiln_status want, const char *needle,
                              const snapshot *before, const char *what) {
    cr_expect_eq(kiln_checkpoint_load(path, r->net, opt, true), want, "%s: %s", what, kiln_last_error());
    kt_expect_error(want, needle);
    expect_unchanged(r, before, what);
}

/* Each of the n variants of good, written to bad, fails to load that way. */
static void expect_variants_fail(rig *r, kiln_optimizer *opt, const char *good, const char *bad, const variant *vs,
                                 int n, const snapshot *before) {
    for (int i = 0; i < n; i++) {
        write_variant(good, bad, &vs[i]);
        expect_load_fails(r, opt, bad, vs[i].want, vs[i].needle, before, vs[i].label);
    }
}

/* A schedule's last step can leave lr below 0 (torch's OneCycleLR with linear annealing
 * does): a checkpoint saved then is valid and loads, with that lr. */
KT_TEST(checkpoint_load, a_negative_lr_from_a_schedule_loads) {
    char good[160], copy[160];
    kt_scratch_path(good, sizeof good, "good.safetensors");
    kt_scratch_path(copy, sizeof copy, "neg.safetensors");
    rig r = trained_with_checkpoint(good);
    write_variant(good, copy, &(variant){"negative lr", .meta_key = "optimizer.lr", .meta_value = "-0.0143"});
    cr_assert_eq(kiln_checkpoint_load(copy, r.net, r.opt, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_optimizer_get_lr(r.opt), -0.0143);
    free_rig(&r);
    kt_scratch_remove();
}

KT_TEST(checkpoint_load, the_untouched_copy_loads_and_changes_everything) {
    char good[160], copy[160];
    kt_scratch_path(good, sizeof good, "good.safetensors");
    kt_scratch_path(copy, sizeof copy, "copy.safetensors");
    rig r = trained_with_checkpoint(good);
    write_variant(good, copy, &(variant){"unchanged"});
    snapshot before = take(&r);
    cr_assert_eq(kiln_checkpoint_load(copy, r.net, r.opt, true), KILN_STATUS_OK, "%s", kiln_last_error());
    snapshot after = take(&r);
    /* every weight, moment, step and the generator come back to the checkpoint's values */
    int changed = 0;
    for (int i = 0; i < before.n; i++)
        changed += before.len[i] != after.len[i] || memcmp(before.bytes[i], after.bytes[i], before.len[i]);
    cr_expect_eq(kiln_optimizer_step_count(r.opt), 3);
    cr_expect_gt(changed, 20, "only %d of %d entries changed", changed, before.n);
    uint64_t seed, off;
    kiln_rng_get_state(&seed, &off);
    cr_expect(seed == 3 && off != 4242, "the generator is back at the checkpoint's position (%llu, %llu)",
              (unsigned long long)seed, (unsigned long long)off);
    snap_free(&before);
    snap_free(&after);
    free_rig(&r);
    kt_scratch_remove();
}

KT_TEST(checkpoint_load, every_corrupted_variant_fails_and_changes_nothing) {
    char good[160], bad[160];
    kt_scratch_path(good, sizeof good, "good.safetensors");
    kt_scratch_path(bad, sizeof bad, "bad.safetensors");
    rig r = trained_with_checkpoint(good);
    snapshot before = take(&r);
    for (int i = 0; i < N_VARIANTS; i++) {
        const variant *v = &g_variants[i];
        write_variant(good, bad, v);
        for (int strict = 1; strict >= 0; strict--) {
            /* non-strict loads ignore missing and unexpected names (and would load the
             * rest, which would hide what later variants write): nothing else */
            if (!strict && (v->drop || v->add)) continue;
            kiln_status st = kiln_checkpoint_load(bad, r.net, r.opt, strict);
            cr_expect_eq(st, v->want, "%s (strict %d): status %s, expected %s: %s", v->label, strict,
                         kiln_status_name(st), kiln_status_name(v->want), kiln_last_error());
            cr_expect(strstr(kiln_last_error(), v->needle), "%s (strict %d): the message does not name '%s': %s",
                      v->label, strict, v->needle, kiln_last_error());
            cr_expect(strstr(kiln_last_error(), "bad.safetensors"), "%s: the message names the file: %s", v->label,
                      kiln_last_error());
            kiln_clear_error();
            char what[160];
            snprintf(what, sizeof what, "%s (strict %d)", v->label, strict);
            expect_unchanged(&r, &before, what);
        }
    }
    snap_free(&before);
    free_rig(&r);
    kt_scratch_remove();
}

/* SGD's own hyper-parameters and its momentum buffers. */
KT_TEST(checkpoint_load, sgd_variants_fail_and_change_nothing) {
    char good[160], bad[160];
    kt_scratch_path(good, sizeof good, "good.safetensors");
    kt_scratch_path(bad, sizeof bad, "bad.safetensors");
    rig r = trained_with_checkpoint_on(good, KILN_CPU, true);
    snapshot before = take(&r);
    const variant vs[] = {
        {"kind adam", .meta_key = "optimizer.optimizer", .meta_value = "adam", .want = KILN_STATUS_FORMAT,
         .needle = "adam"},
        {"momentum off", .meta_key = "optimizer.momentum", .meta_value = "0", .want = KILN_STATUS_FORMAT,
         .needle = "momentum"},
        {"negative momentum", .meta_key = "optimizer.momentum", .meta_value = "-0.5", .want = KILN_STATUS_FORMAT,
         .needle = "momentum"},
        {"dampening not a number", .meta_key = "optimizer.dampening", .meta_value = "x", .want = KILN_STATUS_FORMAT,
         .needle = "dampening"},
        {"nesterov with dampening", .meta_key = "optimizer.nesterov", .meta_value = "true",
         .want = KILN_STATUS_FORMAT, .needle = "nesterov"},
        {"lr that is not a number", .meta_key = "optimizer.lr", .meta_value = "nan", .want = KILN_STATUS_FORMAT,
         .needle = "lr"},
        {"missing momentum buffer", .drop = "optimizer.state.1.momentum_buffer", .want = KILN_STATUS_SHAPE,
         .needle = "optimizer.state.1.momentum_buffer"},
        {"step tensor past the step count", .poke = "optimizer.state.0.step", .value = 4, .want = KILN_STATUS_FORMAT,
         .needle = "optimizer.state.0.step"},
    };
    expect_variants_fail(&r, r.opt, good, bad, vs, (int)(sizeof vs / sizeof vs[0]), &before);
    cr_expect_eq(kiln_checkpoint_load(good, r.net, r.opt, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_optimizer_step_count(r.opt), 3);
    snap_free(&before);
    free_rig(&r);
    kt_scratch_remove();
}

/* Without an optimizer the model and the generator are still all-or-nothing. */
KT_TEST(checkpoint_load, model_only_load_of_a_bad_file_changes_nothing) {
    char good[160], bad[160];
    kt_scratch_path(good, sizeof good, "good.safetensors");
    kt_scratch_path(bad, sizeof bad, "bad.safetensors");
    rig r = trained_with_checkpoint(good);
    snapshot before = take(&r);
    const variant vs[] = {
        {"rng", .meta_key = "kiln.rng_seed", .meta_value = "12x", .want = KILN_STATUS_FORMAT,
         .needle = "kiln.rng_seed"},
        {"shape", .reshape = "1.running_var", .want = KILN_STATUS_SHAPE, .needle = "1.running_var"},
        {"missing", .drop = "0.bias", .want = KILN_STATUS_SHAPE, .needle = "0.bias"},
    };
    expect_variants_fail(&r, NULL, good, bad, vs, 3, &before);
    snap_free(&before);
    free_rig(&r);
    kt_scratch_remove();
}

KT_TEST(checkpoint_load, truncated_and_damaged_files_change_nothing) {
    char good[160], bad[160];
    kt_scratch_path(good, sizeof good, "good.safetensors");
    kt_scratch_path(bad, sizeof bad, "bad.safetensors");
    rig r = trained_with_checkpoint(good);
    snapshot before = take(&r);
    FILE *f = fopen(good, "rb");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *raw = malloc(n);
    cr_assert_eq(fread(raw, 1, n, f), n);
    fclose(f);
    const size_t cuts[] = {n - 1, n - 4, n / 2, 100, 9};
    for (int i = 0; i < 5; i++) {
        f = fopen(bad, "wb");
        cr_assert_eq(fwrite(raw, 1, cuts[i], f), cuts[i]);
        fclose(f);
        char what[32];
        snprintf(what, sizeof what, "cut at %zu", cuts[i]);
        expect_load_fails(&r, r.opt, bad, KILN_STATUS_FORMAT, "bad.safetensors", &before, what);
    }
    free(raw);
    snap_free(&before);
    free_rig(&r);
    kt_scratch_remove();
}

/* The two halves of a load: staging reads everything (and fails on a file that
 * shrank after it was opened) without writing; commit writes. */
KT_TEST(checkpoint_load, staging_reads_everything_before_anything_is_written) {
    char path[160];
    kt_scratch_path(path, sizeof path, "ab.safetensors");
    kiln_named_tensor ts[] = {{"a", KT_F64(1, KT_SHAPE(2), {1, 2})}, {"b", KT_F32(1, KT_SHAPE(3), {3, 4, 5})}};
    cr_assert_eq(kiln_safetensors_save(path, ts, 2, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *a = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F64, KILN_CPU);
    kiln_tensor *bbase = kiln_tensor_zeros(1, (int64_t[]){6}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_slice(bbase, 0, 0, 6, 2); /* a strided view */
    cr_assert(b, "%s", kiln_last_error());
    kiln_named_tensor into[] = {{"a", a}, {"b", b}};
    kiln_tensor *staged[2] = {NULL, NULL};

    /* "a" comes first in the data (8-byte elements first): the file losing its last
     * bytes after the open fails the read of "b", and "a" is not written either */
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s", kiln_last_error());
    FILE *fp = fopen(path, "rb");
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fclose(fp);
    cr_assert_eq(truncate(path, size - 4), 0);
    cr_expect_eq(kiln_safetensors_stage(f, into, 2, true, staged), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "\"b\"");
    cr_expect(!staged[0] && !staged[1], "a failed stage leaves nothing staged");
    KT_EXPECT(a, 0, 0, {0, 0});
    kiln_safetensors_close(f);

    cr_assert_eq(kiln_safetensors_save(path, ts, 2, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    f = kiln_safetensors_open(path);
    cr_assert_eq(kiln_safetensors_stage(f, into, 2, true, staged), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_safetensors_close(f); /* the staged tensors do not need the file */
    KT_EXPECT(a, 0, 0, {0, 0});
    KT_EXPECT(staged[0], 0, 0, {1, 2});
    KT_EXPECT(staged[1], 0, 0, {3, 4, 5});
    /* staged tensors that do not fit are refused before anything is written */
    kiln_tensor *swapped[2] = {staged[1], staged[0]};
    cr_expect_eq(kiln_safetensors_commit(into, 2, swapped), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "staged[0]");
    KT_EXPECT(a, 0, 0, {0, 0});
    cr_expect_eq(kiln_safetensors_commit(into, 2, staged), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(a, 0, 0, {1, 2});
    KT_EXPECT(bbase, 0, 0, {3, 0, 4, 0, 5, 0});
    kt_scratch_remove();
}

/* On a GPU the staging is on the device: a bad file leaves the device state as it was. */
KT_TEST(checkpoint_load, device_model_and_optimizer_are_all_or_nothing) {
    if (kiln_cuda_device_count() == 0) cr_skip_test("no CUDA device here: the device staging path is not run");
    char good[160], bad[160];
    kt_scratch_path(good, sizeof good, "good.safetensors");
    kt_scratch_path(bad, sizeof bad, "bad.safetensors");
    rig r = trained_with_checkpoint_on(good, KILN_CUDA(0), false);
    snapshot before = take(&r);
    const variant vs[] = {
        {"lr", .meta_key = "optimizer.lr", .meta_value = "inf", .want = KILN_STATUS_FORMAT, .needle = "lr"},
        {"shape", .reshape = "optimizer.state.2.exp_avg", .want = KILN_STATUS_SHAPE, .needle = "exp_avg"},
        {"moment", .poke = "optimizer.state.2.exp_avg_sq", .value = -2, .want = KILN_STATUS_FORMAT,
         .needle = "optimizer.state.2.exp_avg_sq"},
    };
    expect_variants_fail(&r, r.opt, good, bad, vs, 3, &before);
    cr_expect_eq(kiln_checkpoint_load(good, r.net, r.opt, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_optimizer_step_count(r.opt), 3);
    snap_free(&before);
    free_rig(&r);
    kt_scratch_remove();
}

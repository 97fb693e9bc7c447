/* Fuzz harness: training checkpoints (optim/checkpoint.c, over core/safetensors.c) loaded
 * into a small model ("fc" Linear(2,2), "bn" BatchNorm2d(2)) and its Adam optimizer, as
 * a resumed training run does: model + optimizer (strict, then lenient) and model alone
 * (strict), each into a fresh model. A failed load must leave model, optimizer and
 * generator as they were; a successful one must leave sane hyper-parameters, a model
 * that trains one step, and a state that kiln saves and loads back bit for bit. */
#include "fuzz_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_STATE 64

typedef struct {
    int n;
    void *bytes[MAX_STATE];
    size_t len[MAX_STATE];
    double lr;
    int64_t step;
    uint64_t seed, offset;
} snapshot;

static void take(kf_model *m, snapshot *s) {
    memset(s, 0, sizeof *s);
    kiln_scope *scope = kiln_scope_begin(); /* the optimizer's state views */
    int nm = kiln_module_num_state(m->root);
    int no = kiln_optimizer_state(m->opt, NULL, 0);
    KF_CHECK(nm > 0 && no > 0 && nm + no <= MAX_STATE, "%d model and %d optimizer entries", nm, no);
    kiln_named_tensor os[MAX_STATE];
    KF_CHECK(kiln_optimizer_state(m->opt, os, no) == no, "kiln_optimizer_state");
    for (int i = 0; i < nm + no; i++) {
        kiln_tensor *t = i < nm ? kiln_module_state(m->root, i, NULL, NULL) : os[i - nm].tensor;
        KF_CHECK(t != NULL, "state entry %d", i);
        s->bytes[s->n] = kf_tensor_bytes(t, &s->len[s->n]);
        s->n++;
    }
    kiln_scope_end(scope);
    s->lr = kiln_optimizer_get_lr(m->opt);
    s->step = kiln_optimizer_step_count(m->opt);
    kiln_rng_get_state(&s->seed, &s->offset);
}

/* The first difference, or NULL. */
static const char *differs(const snapshot *a, const snapshot *b) {
    static char why[160];
    if (a->n != b->n) return "the number of state entries";
    for (int i = 0; i < a->n; i++)
        if (a->len[i] != b->len[i] || memcmp(a->bytes[i], b->bytes[i], a->len[i])) {
            snprintf(why, sizeof why, "state entry %d's values", i);
            return why;
        }
    if (memcmp(&a->lr, &b->lr, sizeof a->lr)) return "the learning rate";
    if (a->step != b->step) return "the step count";
    if (a->seed != b->seed || a->offset != b->offset) return "the generator's position";
    return NULL;
}

static void drop(snapshot *s) {
    for (int i = 0; i < s->n; i++) free(s->bytes[i]);
    s->n = 0;
}

/* KILN_FUZZ_LENIENT_ATOMICITY=1 skips the "a failed load writes nothing" check, to fuzz
 * past a known violation of it. */
static bool check_atomicity(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("KILN_FUZZ_LENIENT_ATOMICITY");
        on = !(e && *e == '1');
    }
    return on;
}

static bool try_load(kf_model *m, const char *path, bool with_opt, bool strict) {
    snapshot before, after;
    take(m, &before);
    kiln_clear_error();
    kiln_status st = kiln_checkpoint_load(path, m->root, with_opt ? m->opt : NULL, strict);
    const char *how = with_opt ? (strict ? "model+optimizer, strict" : "model+optimizer, lenient") : "model, strict";
    kf_note("checkpoint load (%s): %s%s%s", how, kiln_status_name(st), st ? ": " : "", st ? kiln_last_error() : "");
    if (st != KILN_STATUS_OK) {
        KF_CHECK(kiln_last_status() == st, "load (%s) returned %s but the error is %s", how, kiln_status_name(st),
                 kiln_status_name(kiln_last_status()));
        KF_CHECK(st == KILN_STATUS_FORMAT || st == KILN_STATUS_SHAPE || st == KILN_STATUS_OOM ||
                     st == KILN_STATUS_DTYPE,
                 "load (%s) failed with %s: %s", how, kiln_status_name(st), kiln_last_error());
        if (check_atomicity()) {
            char why[600];
            snprintf(why, sizeof why, "%s", kiln_last_error() ? kiln_last_error() : "");
            take(m, &after); /* (clears the error) */
            const char *d = differs(&before, &after);
            KF_CHECK(!d, "a failed load (%s, %s: %s) changed %s", how, kiln_status_name(st), why, d);
            drop(&after);
        }
        drop(&before);
        kiln_clear_error();
        return false;
    }
    drop(&before);
    const char *kind = kiln_optimizer_kind(m->opt);
    double lr = kiln_optimizer_get_lr(m->opt);
    KF_CHECK(kind && !strcmp(kind, "adam"), "the optimizer is \"%s\" after a load", kind ? kind : "(null)");
    /* any finite lr is valid: a schedule's last step may leave it below 0 (OneCycleLR) */
    KF_CHECK(isfinite(lr), "a load (%s) accepted learning rate %g", how, lr);
    KF_CHECK(kiln_optimizer_step_count(m->opt) >= 0, "a load accepted step count %lld",
             (long long)kiln_optimizer_step_count(m->opt));
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = kf_input_path(data, size);
    kiln_scope *scope = kf_begin();
    /* each way on a fresh model, so that one load's success cannot hide what a later
     * failed one wrote; the first model that loaded is used below */
    static const struct {
        bool opt, strict;
    } ways[3] = {{true, true}, {true, false}, {false, true}};
    kf_model m = {0};
    bool loaded = false;
    for (int i = 0; i < 3; i++) {
        kf_model t;
        KF_CHECK(kf_model_make(&t), "building the model: %s", kiln_last_error());
        if (try_load(&t, path, ways[i].opt, ways[i].strict) && !loaded) {
            m = t;
            loaded = true;
        } else {
            kf_model_free(&t);
        }
    }
    if (loaded) {
        /* what a resumed run does with it */
        kiln_scope *s = kiln_scope_begin();
        int nm = kiln_module_num_state(m.root);
        for (int i = 0; i < nm; i++) {
            const char *name;
            kf_use_tensor(kiln_module_state(m.root, i, &name, NULL), name);
        }
        int no = kiln_optimizer_state(m.opt, NULL, 0);
        kiln_named_tensor os[MAX_STATE];
        KF_CHECK(no > 0 && no <= MAX_STATE && kiln_optimizer_state(m.opt, os, no) == no, "optimizer state");
        for (int i = 0; i < no; i++) kf_use_tensor(os[i].tensor, os[i].name);
        kiln_scope_end(s);
        kf_model_step(&m); /* NaN weights from the file may fail it; it must not crash */
        kiln_clear_error();

        /* kiln reads back what it writes */
        const char *p2 = kf_scratch_path("roundtrip.safetensors");
        kiln_status st = kiln_checkpoint_save(p2, m.root, m.opt, NULL, 0);
        KF_CHECK(st == KILN_STATUS_OK, "saving the loaded model failed: %s", kiln_status_name(st));
        snapshot a, b;
        take(&m, &a); /* before the second model's initialisation draws from the generator */
        kf_model m2;
        KF_CHECK(kf_model_make(&m2), "building the second model: %s", kiln_last_error());
        kiln_clear_error();
        st = kiln_checkpoint_load(p2, m2.root, m2.opt, true);
        KF_CHECK(st == KILN_STATUS_OK, "kiln cannot load the checkpoint it saved: %s", kiln_last_error());
        take(&m2, &b);
        const char *d = differs(&a, &b);
        KF_CHECK(!d, "save then load changed %s", d);
        drop(&a);
        drop(&b);
        unlink(p2);
        kf_model_free(&m2);
        kf_model_free(&m);
    }
    kf_end(scope);
    return 0;
}

/* Optimizers: sgd, adam and adamw over a list of parameters. State lives in one
 * arena per kind (momentum / exp_avg / exp_avg_sq / max_exp_avg_sq), laid out in
 * parameter order; when the parameters and their gradients sit back to back in one
 * storage each (module arenas) a step is one kernel call over the whole span. */
#include "../core/internal.h"
#include "../kernels/cpu/optim.h"
#ifdef KILN_HAVE_CUDA
#include "../kernels/cuda/launch_optimizer.h" /* kiln_cuda_sgd_update, kiln_cuda_adam_update */
#endif

#include <errno.h>
#include <math.h>
#include <stdlib.h>

/* core/tensor.c: a contiguous tensor owned by no scope (freed with kiln_tensor_free). */
kiln_tensor *kiln__new_owned(const kiln_tensor *like);

enum { KIND_SGD, KIND_ADAM, KIND_ADAMW };
static const char *const g_kind_names[] = {"sgd", "adam", "adamw"};
#define MAX_STATE 3

struct kiln_optimizer {
    int kind;
    kiln_sgd_options sgd;
    kiln_adam_options adam;
    int n;
    kiln_tensor **params;
    int64_t *offset; /* element offset of each parameter in the state arenas */
    int64_t total;
    kiln_dtype dtype;
    kiln_device device;
    int nstate;
    const char *state_kind[MAX_STATE];
    kiln_tensor *state[MAX_STATE]; /* arenas of total elements */
    kiln_tensor *steps;            /* f32 [n] on the CPU: torch's per-parameter state['step'] */
    int64_t step_count, fused_updates;
    char **names; /* n * (1 + nstate) export names */
    char meta[12][64];
};

kiln_sgd_options kiln_sgd_defaults(void) { return (kiln_sgd_options){.lr = 1e-3}; }

kiln_adam_options kiln_adam_defaults(void) {
    return (kiln_adam_options){.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
}

kiln_adam_options kiln_adamw_defaults(void) {
    kiln_adam_options o = kiln_adam_defaults();
    o.weight_decay = 1e-2;
    return o;
}

static kiln_tensor *owned_1d(int64_t n, kiln_dtype dt, kiln_device dev) {
    kiln_tensor like = {.ndim = 1, .shape = {n}, .dtype = dt, .device = dev};
    kiln_tensor *t = kiln__new_owned(&like);
    if (t && kiln_tensor_fill(t, 0.0) != KILN_STATUS_OK) {
        kiln_tensor_free(t);
        return NULL;
    }
    return t;
}

void kiln_optimizer_free(kiln_optimizer *o) {
    if (!o) return;
    for (int k = 0; k < o->nstate; k++) kiln_tensor_free(o->state[k]);
    kiln_tensor_free(o->steps);
    if (o->names)
        for (int i = 0; i < o->n * (1 + o->nstate); i++) free(o->names[i]);
    free(o->names);
    free(o->params);
    free(o->offset);
    free(o);
}

static bool check_sgd(const kiln_sgd_options *s) {
    const char *bad = NULL;
    if (!(s->lr >= 0)) bad = "lr must be >= 0";
    else if (!(s->momentum >= 0)) bad = "momentum must be >= 0";
    else if (!(s->weight_decay >= 0)) bad = "weight_decay must be >= 0";
    else if (s->nesterov && (s->momentum <= 0 || s->dampening != 0))
        bad = "nesterov needs momentum > 0 and dampening == 0 (as torch)";
    if (bad) kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optim_sgd: %s", bad);
    return !bad;
}

static bool check_adam(const char *op, const kiln_adam_options *a) {
    char bad[160] = "";
    if (!(a->lr >= 0)) snprintf(bad, sizeof bad, "lr %g must be >= 0", a->lr);
    else if (!(a->eps >= 0)) snprintf(bad, sizeof bad, "eps %g must be >= 0", a->eps);
    else if (!(a->beta1 >= 0 && a->beta1 < 1)) snprintf(bad, sizeof bad, "beta1 %g must be in [0, 1)", a->beta1);
    else if (!(a->beta2 >= 0 && a->beta2 < 1)) snprintf(bad, sizeof bad, "beta2 %g must be in [0, 1)", a->beta2);
    else if (!(a->weight_decay >= 0)) snprintf(bad, sizeof bad, "weight_decay %g must be >= 0", a->weight_decay);
    if (bad[0]) kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %s", op, bad);
    return !bad[0];
}

static kiln_optimizer *create(const char *op, int kind, kiln_tensor *const *params, int n) {
    if (!params || n <= 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: got an empty parameter list (n = %d)", op, n);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!params[i]) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: parameter %d is NULL (an earlier call failed?)", op, i);
            return NULL;
        }
        char d0[160], d1[160];
        if (!kiln__is_float(params[i]->dtype) || params[i]->dtype != params[0]->dtype ||
            !kiln_device_equal(params[i]->device, params[0]->device)) {
            kiln__error(KILN_STATUS_DTYPE, "%s: parameter %d is %s but parameter 0 is %s; one optimizer takes "
                        "float parameters of one dtype and device (create one optimizer per dtype)", op, i,
                        kiln_tensor_describe(params[i], d0, sizeof d0), kiln_tensor_describe(params[0], d1, sizeof d1));
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (params[j] == params[i]) {
                kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: parameters %d and %d are the same tensor; each "
                            "parameter may appear once", op, j, i);
                return NULL;
            }
    }
    kiln_optimizer *o = calloc(1, sizeof *o);
    if (!o || !(o->params = malloc((size_t)n * sizeof *o->params)) ||
        !(o->offset = malloc((size_t)n * sizeof *o->offset))) {
        if (o) free(o->params);
        free(o);
        kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
        return NULL;
    }
    o->kind = kind;
    o->n = n;
    o->dtype = params[0]->dtype;
    o->device = params[0]->device;
    for (int i = 0; i < n; i++) {
        o->params[i] = params[i];
        o->offset[i] = o->total;
        o->total += kiln_tensor_numel(params[i]);
    }
    return o;
}

/* Allocates the arenas and export names once the state kinds are known. */
static kiln_optimizer *finish(kiln_optimizer *o) {
    for (int k = 0; k < o->nstate; k++)
        if (!(o->state[k] = owned_1d(o->total, o->dtype, o->device))) goto fail;
    if (!(o->steps = owned_1d(o->n, KILN_F32, KILN_CPU))) goto fail;
    int per = 1 + o->nstate;
    o->names = calloc((size_t)o->n * per, sizeof *o->names);
    if (!o->names) goto oom;
    for (int i = 0; i < o->n; i++)
        for (int k = 0; k < per; k++) {
            const char *what = k == 0 ? "step" : o->state_kind[k - 1];
            size_t len = strlen(what) + 32;
            char *s = malloc(len);
            if (!s) goto oom;
            snprintf(s, len, "state.%d.%s", i, what);
            o->names[i * per + k] = s;
        }
    return o;
oom:
    kiln__error(KILN_STATUS_OOM, "kiln optimizer: out of host memory for its state names");
fail:
    kiln_optimizer_free(o);
    return NULL;
}

kiln_optimizer *kiln_optim_sgd(kiln_tensor *const *params, int n, kiln_sgd_options s) {
    if (!check_sgd(&s)) return NULL;
    kiln_optimizer *o = create("kiln_optim_sgd", KIND_SGD, params, n);
    if (!o) return NULL;
    o->sgd = s;
    if (s.momentum != 0) o->state_kind[o->nstate++] = "momentum_buffer";
    return finish(o);
}

static kiln_optimizer *adam_like(const char *op, int kind, kiln_tensor *const *params, int n, kiln_adam_options a) {
    if (!check_adam(op, &a)) return NULL;
    kiln_optimizer *o = create(op, kind, params, n);
    if (!o) return NULL;
    o->adam = a;
    o->state_kind[o->nstate++] = "exp_avg";
    o->state_kind[o->nstate++] = "exp_avg_sq";
    if (a.amsgrad) o->state_kind[o->nstate++] = "max_exp_avg_sq";
    return finish(o);
}

kiln_optimizer *kiln_optim_adam(kiln_tensor *const *params, int n, kiln_adam_options a) {
    return adam_like("kiln_optim_adam", KIND_ADAM, params, n, a);
}

kiln_optimizer *kiln_optim_adamw(kiln_tensor *const *params, int n, kiln_adam_options a) {
    return adam_like("kiln_optim_adamw", KIND_ADAMW, params, n, a);
}

/* ---- the step ------------------------------------------------------------------------ */

/* True when ts[0..n) are contiguous and back to back in one storage, in order. */
static bool adjacent(kiln_tensor *const *ts, int n) {
    for (int i = 0; i < n; i++) {
        if (!ts[i] || !kiln_tensor_is_contiguous(ts[i]) || ts[i]->storage != ts[0]->storage) return false;
        if (i && ts[i]->offset != ts[i - 1]->offset +
                                       kiln_tensor_numel(ts[i - 1]) * (int64_t)kiln_dtype_size(ts[i - 1]->dtype))
            return false;
    }
    return true;
}

static void *state_ptr(const kiln_optimizer *o, int k, int64_t off) {
    if (k >= o->nstate) return NULL;
    return kiln__ptr(o->state[k]) + off * (int64_t)kiln_dtype_size(o->dtype);
}

/* Updates `count` elements at p/g whose state starts at element off; t is the step
 * number after this update (1 on the first). CUDA parameters: one kernel launch. */
static kiln_status update_span(kiln_optimizer *o, void *p, const void *g, int64_t off, int64_t count, double t) {
    bool cuda = o->device.type == KILN_DEVICE_CUDA;
#ifndef KILN_HAVE_CUDA
    if (cuda) return kiln__error(KILN_STATUS_DEVICE, "kiln_optimizer_step: this kiln was built without CUDA");
#endif
    if (o->kind == KIND_SGD) {
        const kiln_sgd_options *s = &o->sgd;
        kiln_sgd_hparams h = {s->lr, s->momentum, s->dampening, s->weight_decay, s->nesterov, s->maximize, t == 1};
#ifdef KILN_HAVE_CUDA
        if (cuda) return kiln_cuda_sgd_update(o->device, o->dtype, p, g, state_ptr(o, 0, off), count, &h);
#endif
        kiln_cpu_sgd_update(o->dtype, p, g, state_ptr(o, 0, off), count, &h);
        return KILN_STATUS_OK;
    }
    const kiln_adam_options *a = &o->adam;
    kiln_adam_hparams h = {a->lr, a->beta1, a->beta2, a->eps, a->weight_decay, o->kind == KIND_ADAMW, a->amsgrad,
                           a->maximize};
    /* torch: bias_correction = 1 - beta ** step in python floats */
    h.step_size = a->lr / (1 - pow(a->beta1, t));
    h.bc2_sqrt = sqrt(1 - pow(a->beta2, t));
#ifdef KILN_HAVE_CUDA
    if (cuda)
        return kiln_cuda_adam_update(o->device, o->dtype, p, g, state_ptr(o, 0, off), state_ptr(o, 1, off),
                                     state_ptr(o, 2, off), count, &h);
#endif
    kiln_cpu_adam_update(o->dtype, p, g, state_ptr(o, 0, off), state_ptr(o, 1, off), state_ptr(o, 2, off), count,
                         &h);
    return KILN_STATUS_OK;
}

kiln_status kiln_optimizer_step(kiln_optimizer *o) {
    if (!o) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optimizer_step: optimizer is NULL");
    const char *op = "kiln_optimizer_step";
    bool all = true;
    for (int i = 0; i < o->n; i++) {
        kiln_tensor *p = o->params[i], *g = p->grad;
        if (!g) {
            all = false;
            continue;
        }
        bool same = g->ndim == p->ndim && g->dtype == p->dtype && kiln_device_equal(g->device, p->device);
        for (int d = 0; same && d < p->ndim; d++) same = g->shape[d] == p->shape[d];
        if (!same) {
            char b0[160], b1[160];
            return kiln__error(KILN_STATUS_SHAPE, "%s: parameter %d is %s but its gradient is %s", op, i,
                               kiln_tensor_describe(p, b0, sizeof b0), kiln_tensor_describe(g, b1, sizeof b1));
        }
    }
    float *steps = (float *)kiln__ptr(o->steps);
    bool updated = false;
    kiln_tensor *grads_small[64], **grads = o->n <= 64 ? grads_small : malloc((size_t)o->n * sizeof *grads);
    if (!grads) return kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
    /* One pass needs one set of coefficients: adam's bias corrections depend on the
     * step, sgd's only on whether the momentum buffer exists yet. */
    bool fused = all;
    for (int i = 0; i < o->n && fused; i++) {
        grads[i] = o->params[i]->grad;
        fused = o->kind == KIND_SGD ? (steps[i] == 0) == (steps[0] == 0) : steps[i] == steps[0];
    }
    if (fused && adjacent(o->params, o->n) && adjacent(grads, o->n)) {
        kiln_status st = update_span(o, kiln__ptr(o->params[0]), kiln__ptr(grads[0]), 0, o->total,
                                     (double)steps[0] + 1);
        if (st != KILN_STATUS_OK) {
            if (grads != grads_small) free(grads);
            return st;
        }
        for (int i = 0; i < o->n; i++) steps[i] += 1;
        o->fused_updates++;
        updated = true;
    } else {
        kiln_status st = KILN_STATUS_OK;
        kiln_no_grad_begin();
        for (int i = 0; i < o->n && st == KILN_STATUS_OK; i++) {
            kiln_tensor *p = o->params[i], *g = p->grad;
            if (!g) continue;
            /* A strided parameter or gradient is updated through contiguous copies. */
            kiln_scope *s = kiln_scope_begin();
            kiln_tensor *pc = kiln_tensor_is_contiguous(p) ? p : kiln_tensor_contiguous(kiln_tensor_detach(p));
            kiln_tensor *gc = kiln_tensor_contiguous(g);
            if (!pc || !gc) st = kiln_last_status();
            if (st == KILN_STATUS_OK) {
                st = update_span(o, kiln__ptr(pc), kiln__ptr(gc), o->offset[i], kiln_tensor_numel(p),
                                 (double)steps[i] + 1);
                if (st == KILN_STATUS_OK && pc != p) st = kiln_tensor_copy_(p, pc);
                steps[i] += 1;
                updated = true;
            }
            kiln_scope_end(s);
        }
        kiln_no_grad_end();
        if (st != KILN_STATUS_OK) {
            if (grads != grads_small) free(grads);
            return st;
        }
    }
    if (grads != grads_small) free(grads);
    if (updated) o->step_count++;
    return KILN_STATUS_OK;
}

void kiln_optimizer_zero_grad(kiln_optimizer *o) {
    if (!o) return;
    kiln_tensor **grads = malloc((size_t)o->n * sizeof *grads);
    bool all = grads != NULL;
    for (int i = 0; i < o->n && all; i++) all = (grads[i] = o->params[i]->grad) != NULL;
    if (all && adjacent(grads, o->n) && o->device.type == KILN_DEVICE_CPU)
        memset(kiln__ptr(grads[0]), 0, (size_t)o->total * kiln_dtype_size(o->dtype));
    else
        for (int i = 0; i < o->n; i++) kiln_tensor_zero_grad(o->params[i]);
    free(grads);
}

/* As torch's param_groups[i]['lr'] = lr, which schedulers write: any value, a negative one
 * too (OneCycleLR with linear annealing extrapolates below 0 at its last step, which a
 * standard loop sets and never uses); the constructors keep torch's lr >= 0. NaN and
 * infinities are refused: a failed kiln_schedule_lr returns NaN, and this is where its
 * error surfaces. */
kiln_status kiln_optimizer_set_lr(kiln_optimizer *o, double lr) {
    if (!o) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optimizer_set_lr: optimizer is NULL");
    if (!isfinite(lr))
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optimizer_set_lr: lr %g must be a finite number", lr);
    if (o->kind == KIND_SGD) o->sgd.lr = lr;
    else o->adam.lr = lr;
    return KILN_STATUS_OK;
}

double kiln_optimizer_get_lr(const kiln_optimizer *o) {
    if (!o) return NAN;
    return o->kind == KIND_SGD ? o->sgd.lr : o->adam.lr;
}

int64_t kiln_optimizer_step_count(const kiln_optimizer *o) { return o ? o->step_count : 0; }
int64_t kiln_optimizer_fused_updates(const kiln_optimizer *o) { return o ? o->fused_updates : 0; }
const char *kiln_optimizer_kind(const kiln_optimizer *o) { return o ? g_kind_names[o->kind] : NULL; }

/* ---- state export / import -------------------------------------------------------------- */

int kiln_optimizer_state(kiln_optimizer *o, kiln_named_tensor *out, int cap) {
    if (!o) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optimizer_state: optimizer is NULL");
        return -1;
    }
    int per = 1 + o->nstate, total = o->n * per;
    if (cap <= 0) return total;
    if (!out || cap < total) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optimizer_state: room for %d entries, the state has %d (call "
                    "with cap 0 to size the array)", cap, total);
        return -1;
    }
    size_t es = kiln_dtype_size(o->dtype);
    for (int i = 0; i < o->n; i++) {
        kiln_tensor *p = o->params[i];
        for (int k = 0; k < per; k++) {
            kiln_tensor *v;
            if (k == 0) {
                v = kiln__view(o->steps, 0, NULL, NULL, (int64_t)i * 4);
            } else {
                int64_t strides[KILN_MAX_DIMS];
                kiln__contiguous_strides(p->ndim, p->shape, es, strides);
                v = kiln__view(o->state[k - 1], p->ndim, p->shape, strides, o->offset[i] * (int64_t)es);
            }
            if (!v) return -1;
            out[i * per + k] = (kiln_named_tensor){o->names[i * per + k], v};
        }
    }
    return total;
}

int kiln_optimizer_metadata(kiln_optimizer *o, kiln_metadata_entry *out, int cap) {
    if (!o) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optimizer_metadata: optimizer is NULL");
        return -1;
    }
    const char *keys[12];
    int n = 0;
#define META(key, ...) (keys[n] = (key), snprintf(o->meta[n], sizeof o->meta[n], __VA_ARGS__), n++)
    META("optimizer", "%s", g_kind_names[o->kind]);
    META("step", "%lld", (long long)o->step_count);
    if (o->kind == KIND_SGD) {
        META("lr", "%.17g", o->sgd.lr);
        META("momentum", "%.17g", o->sgd.momentum);
        META("dampening", "%.17g", o->sgd.dampening);
        META("weight_decay", "%.17g", o->sgd.weight_decay);
        META("nesterov", "%s", o->sgd.nesterov ? "true" : "false");
        META("maximize", "%s", o->sgd.maximize ? "true" : "false");
    } else {
        META("lr", "%.17g", o->adam.lr);
        META("betas", "%.17g,%.17g", o->adam.beta1, o->adam.beta2);
        META("eps", "%.17g", o->adam.eps);
        META("weight_decay", "%.17g", o->adam.weight_decay);
        META("amsgrad", "%s", o->adam.amsgrad ? "true" : "false");
        META("maximize", "%s", o->adam.maximize ? "true" : "false");
    }
#undef META
    if (cap <= 0) return n;
    if (!out || cap < n) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_optimizer_metadata: room for %d entries, there are %d", cap, n);
        return -1;
    }
    for (int i = 0; i < n; i++) out[i] = (kiln_metadata_entry){keys[i], o->meta[i]};
    return n;
}

static bool parse_double(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == '\0';
}

static bool parse_bool(const char *s, bool *out) {
    if (!strcmp(s, "true")) *out = true;
    else if (!strcmp(s, "false")) *out = false;
    else return false;
    return true;
}

kiln_status kiln_optimizer_load_metadata(kiln_optimizer *o, const kiln_metadata_entry *m, int n) {
    const char *op = "kiln_optimizer_load_metadata";
    if (!o || (n > 0 && !m)) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: optimizer or entries is NULL", op);
    kiln_sgd_options s = o->sgd;
    kiln_adam_options a = o->adam;
    int64_t step = o->step_count;
    double lr = o->kind == KIND_SGD ? s.lr : a.lr;
    for (int i = 0; i < n; i++) {
        const char *k = m[i].key, *v = m[i].value;
        if (!k || !v) continue;
        bool ok = true, isg = o->kind == KIND_SGD;
        double d;
        char *end;
        if (!strcmp(k, "optimizer")) {
            if (strcmp(v, g_kind_names[o->kind]))
                return kiln__error(KILN_STATUS_FORMAT, "%s: the checkpoint holds %s state but this optimizer is %s",
                                   op, v, g_kind_names[o->kind]);
        } else if (!strcmp(k, "step")) {
            errno = 0;
            long long x = strtoll(v, &end, 10);
            ok = end != v && *end == '\0' && x >= 0 && errno != ERANGE;
            step = x;
        } else if (!strcmp(k, "lr")) {
            /* any finite value, as kiln_optimizer_set_lr takes: a schedule's last step may
             * leave it below 0 (OneCycleLR), and a checkpoint saved then must load */
            ok = parse_double(v, &d) && isfinite(d);
            lr = d;
        } else if (!strcmp(k, "weight_decay")) {
            ok = parse_double(v, &d) && d >= 0;
            if (isg) s.weight_decay = d;
            else a.weight_decay = d;
        } else if (!strcmp(k, "maximize")) {
            ok = parse_bool(v, isg ? &s.maximize : &a.maximize);
        } else if (isg && !strcmp(k, "momentum")) {
            ok = parse_double(v, &s.momentum) && (s.momentum != 0) == (o->sgd.momentum != 0);
        } else if (isg && !strcmp(k, "dampening")) {
            ok = parse_double(v, &s.dampening);
        } else if (isg && !strcmp(k, "nesterov")) {
            ok = parse_bool(v, &s.nesterov);
        } else if (!isg && !strcmp(k, "betas")) {
            int used = -1; /* the whole value, nothing after the second number */
            ok = sscanf(v, "%lf,%lf%n", &a.beta1, &a.beta2, &used) == 2 && used >= 0 && v[used] == '\0';
        } else if (!isg && !strcmp(k, "eps")) {
            ok = parse_double(v, &a.eps);
        } else if (!isg && !strcmp(k, "amsgrad")) {
            bool b;
            ok = parse_bool(v, &b) && b == o->adam.amsgrad;
        }
        if (!ok)
            return kiln__error(KILN_STATUS_FORMAT, "%s: metadata %s = '%s' is not a valid value for this %s optimizer%s",
                               op, k, v, g_kind_names[o->kind],
                               !strcmp(k, "momentum") || !strcmp(k, "amsgrad")
                                   ? " (momentum on/off and amsgrad must match the state it was created with)"
                                   : "");
    }
    if (o->kind == KIND_SGD ? !check_sgd(&s) : !check_adam(op, &a)) return kiln_last_status();
    o->sgd = s;
    o->adam = a;
    if (o->kind == KIND_SGD) o->sgd.lr = lr;
    else o->adam.lr = lr;
    o->step_count = step;
    return KILN_STATUS_OK;
}

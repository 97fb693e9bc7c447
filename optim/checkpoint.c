/* Training checkpoints: a module's state_dict, an optimizer's state and the RNG
 * position in one safetensors file, so that a resumed run continues exactly and
 * PyTorch can read the model part by name. */
#include "../core/internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#define OPT_PREFIX "optimizer."

typedef struct {
    kiln_named_tensor *t;
    char **owned; /* names allocated here */
    int n, cap;
} name_list;

static bool push(name_list *l, const char *prefix, const char *name, kiln_tensor *t) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        void *a = realloc(l->t, (size_t)cap * sizeof *l->t), *b = realloc(l->owned, (size_t)cap * sizeof *l->owned);
        if (a) l->t = a;
        if (b) l->owned = b;
        if (!a || !b) return false;
        l->cap = cap;
    }
    char *s = NULL;
    if (prefix) {
        size_t len = strlen(prefix) + strlen(name) + 1;
        s = malloc(len);
        if (!s) return false;
        snprintf(s, len, "%s%s", prefix, name);
    }
    l->owned[l->n] = s;
    l->t[l->n++] = (kiln_named_tensor){s ? s : name, t};
    return true;
}

static void list_free(name_list *l) {
    for (int i = 0; i < l->n; i++) free(l->owned[i]);
    free(l->t);
    free(l->owned);
}

/* The module's state_dict and, with opt, the optimizer's state (views in the current scope). */
static kiln_status gather(name_list *l, kiln_module *m, kiln_optimizer *opt) {
    int n = kiln_module_num_state(m);
    for (int i = 0; i < n; i++) {
        const char *name;
        kiln_tensor *t = kiln_module_state(m, i, &name, NULL);
        if (!t || !push(l, NULL, name, t)) return kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
    }
    if (!opt) return KILN_STATUS_OK;
    int k = kiln_optimizer_state(opt, NULL, 0);
    if (k < 0) return kiln_last_status();
    kiln_named_tensor *st = calloc((size_t)(k ? k : 1), sizeof *st);
    if (!st) return kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
    kiln_optimizer_state(opt, st, k);
    for (int i = 0; i < k; i++)
        if (!push(l, OPT_PREFIX, st[i].name, st[i].tensor)) {
            free(st);
            return kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
        }
    free(st);
    return KILN_STATUS_OK;
}

kiln_status kiln_checkpoint_save(const char *path, kiln_module *m, kiln_optimizer *opt,
                                 const kiln_metadata_entry *extra, int nextra) {
    if (!path || !m)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_checkpoint_save: %s is NULL", path ? "module" : "path");
    if (nextra < 0 || (nextra && !extra))
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_checkpoint_save: bad extra metadata (%d entries)", nextra);
    kiln_scope *s = kiln_scope_begin();
    name_list l = {0};
    kiln_status st = gather(&l, m, opt);
    int nopt = opt ? kiln_optimizer_metadata(opt, NULL, 0) : 0;
    kiln_metadata_entry *meta = calloc((size_t)(nopt + nextra + 3), sizeof *meta);
    char **keys = calloc((size_t)(nopt + 1), sizeof *keys);
    char seed[32], offset[32];
    if (st == KILN_STATUS_OK && (!meta || !keys)) st = kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
    if (st == KILN_STATUS_OK) {
        int k = 0;
        uint64_t sd, off;
        kiln_rng_get_state(&sd, &off);
        snprintf(seed, sizeof seed, "%" PRIu64, sd);
        snprintf(offset, sizeof offset, "%" PRIu64, off);
        meta[k++] = (kiln_metadata_entry){"format", "pt"}; /* what safetensors' torch loader expects */
        meta[k++] = (kiln_metadata_entry){"kiln.rng_seed", seed};
        meta[k++] = (kiln_metadata_entry){"kiln.rng_offset", offset};
        if (opt) {
            kiln_optimizer_metadata(opt, meta + k, nopt);
            for (int i = 0; i < nopt; i++) {
                size_t len = strlen(OPT_PREFIX) + strlen(meta[k + i].key) + 1;
                keys[i] = malloc(len);
                if (!keys[i]) {
                    st = kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
                    break;
                }
                snprintf(keys[i], len, OPT_PREFIX "%s", meta[k + i].key);
                meta[k + i].key = keys[i];
            }
            k += nopt;
        }
        for (int i = 0; i < nextra; i++) meta[k++] = extra[i];
        if (st == KILN_STATUS_OK) st = kiln_safetensors_save(path, l.t, l.n, meta, k);
    }
    if (keys)
        for (int i = 0; i < nopt; i++) free(keys[i]);
    free(keys);
    free(meta);
    list_free(&l);
    kiln_scope_end(s);
    return st;
}

/* ---- loading: everything is checked before anything is written -------------------- */

#define LOAD_OP "kiln_checkpoint_load"

/* A decimal integer as kiln_checkpoint_save writes it: digits only, no sign, no overflow. */
static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s) return false;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static bool has_prefix(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

/* The generator's position: both entries or neither (a file from PyTorch has none). */
static kiln_status check_rng(const char *path, kiln_safetensors *f, bool *has, uint64_t *seed, uint64_t *offset) {
    const char *sd = kiln_safetensors_metadata_get(f, "kiln.rng_seed");
    const char *off = kiln_safetensors_metadata_get(f, "kiln.rng_offset");
    *has = sd && off;
    if (!sd && !off) return KILN_STATUS_OK;
    if (!sd || !off)
        return kiln__error(KILN_STATUS_FORMAT, "%s '%s': the metadata has %s but not %s; the generator's position "
                           "needs both (nothing loaded)", LOAD_OP, path, sd ? "kiln.rng_seed" : "kiln.rng_offset",
                           sd ? "kiln.rng_offset" : "kiln.rng_seed");
    bool seed_ok = parse_u64(sd, seed);
    if (!seed_ok || !parse_u64(off, offset))
        return kiln__error(KILN_STATUS_FORMAT, "%s '%s': metadata %s = '%.64s' is not a decimal unsigned 64-bit "
                           "integer (nothing loaded)", LOAD_OP, path, seed_ok ? "kiln.rng_offset" : "kiln.rng_seed",
                           seed_ok ? off : sd);
    return KILN_STATUS_OK;
}

/* With strict and no optimizer, the file's optimizer entries are expected, not
 * errors: the model's names are checked here and the load itself is lenient. */
static kiln_status check_model_names(const char *path, kiln_safetensors *f, const name_list *l) {
    for (int i = 0; i < l->n; i++)
        if (!kiln_safetensors_find(f, l->t[i].name))
            return kiln__error(KILN_STATUS_SHAPE, "%s: %s has no entry '%s' of the model (nothing loaded)", LOAD_OP,
                               path, l->t[i].name);
    for (int i = 0; i < kiln_safetensors_count(f); i++) {
        const char *name = kiln_safetensors_entry_at(f, i)->name;
        bool known = has_prefix(name, OPT_PREFIX);
        for (int j = 0; !known && j < l->n; j++) known = strcmp(l->t[j].name, name) == 0;
        if (!known)
            return kiln__error(KILN_STATUS_SHAPE, "%s: %s has an entry '%s' that the model does not have (pass "
                               "strict=false to ignore it; nothing loaded)", LOAD_OP, path, name);
    }
    return KILN_STATUS_OK;
}

/* The optimizer's values that its metadata check does not see: per-parameter step
 * counts (whole numbers in [0, optimizer.step]) and second moments (never negative:
 * averages of squares; a negative one would make Adam's square root NaN). */
static kiln_status check_optimizer_values(const char *path, const name_list *l, int first, kiln_tensor *const *staged,
                                          int64_t step) {
    kiln_status st = KILN_STATUS_OK;
    for (int i = first; i < l->n && st == KILN_STATUS_OK; i++) {
        kiln_tensor *t = staged[i];
        const char *name = l->t[i].name, *dot = strrchr(name, '.');
        if (!t || !dot) continue;
        if (!strcmp(dot, ".step")) {
            double v = kiln_tensor_item(t);
            if (!(v >= 0 && v <= (double)step && v == floor(v)))
                st = kiln__error(KILN_STATUS_FORMAT, "%s '%s': %s = %g is not a whole number of steps in [0, %lld] "
                                 "(optimizer.step bounds every parameter's count); nothing loaded", LOAD_OP, path,
                                 name, v, (long long)step);
            continue;
        }
        if (strcmp(dot, ".exp_avg_sq") && strcmp(dot, ".max_exp_avg_sq")) continue;
        kiln_dtype dt = kiln_tensor_dtype(t);
        if (dt != KILN_F32 && dt != KILN_F64) continue;
        int64_t n = kiln_tensor_numel(t);
        size_t bytes = (size_t)n * kiln_dtype_size(dt);
        void *host = kiln_tensor_data(t), *buf = NULL;
        if (kiln_tensor_device(t).type != KILN_DEVICE_CPU) {
            host = buf = malloc(bytes ? bytes : 1);
            if (!buf) return kiln__error(KILN_STATUS_OOM, "%s: out of host memory checking %s", LOAD_OP, name);
            if ((st = kiln_tensor_to_host(t, buf, bytes)) != KILN_STATUS_OK) {
                free(buf);
                return st;
            }
        }
        for (int64_t k = 0; k < n; k++) {
            double v = dt == KILN_F32 ? ((const float *)host)[k] : ((const double *)host)[k];
            if (v < 0) {
                st = kiln__error(KILN_STATUS_FORMAT, "%s '%s': %s[%lld] = %g is negative, which a second moment (an "
                                 "average of squares) cannot be; nothing loaded", LOAD_OP, path, name, (long long)k, v);
                break;
            }
        }
        free(buf);
    }
    return st;
}

/* The "optimizer.*" metadata without its prefix, checked where the optimizer's own
 * check would not name the file: the kind and the step count must be there. */
static kiln_status optimizer_metadata(const char *path, kiln_safetensors *f, kiln_optimizer *opt,
                                      kiln_metadata_entry **out, int *nout, int64_t *step) {
    const kiln_metadata_entry *all;
    int nm = kiln_safetensors_metadata(f, &all), k = 0;
    kiln_metadata_entry *om = calloc((size_t)nm + 1, sizeof *om);
    if (!om) return kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
    for (int i = 0; i < nm; i++)
        if (has_prefix(all[i].key, OPT_PREFIX))
            om[k++] = (kiln_metadata_entry){all[i].key + strlen(OPT_PREFIX), all[i].value};
    *out = om;
    *nout = k;
    const char *kind = NULL, *steps = NULL;
    for (int i = 0; i < k; i++) {
        if (!strcmp(om[i].key, "optimizer")) kind = om[i].value;
        if (!strcmp(om[i].key, "step")) steps = om[i].value;
    }
    if (!kind || !steps)
        return kiln__error(KILN_STATUS_FORMAT, "%s '%s': the file has optimizer state but no optimizer.%s metadata "
                           "(kiln_checkpoint_save writes it; pass a NULL optimizer to load the model alone)", LOAD_OP,
                           path, kind ? "step" : "optimizer");
    if (strcmp(kind, kiln_optimizer_kind(opt)))
        return kiln__error(KILN_STATUS_FORMAT, "%s '%s': metadata optimizer.optimizer = '%.32s': the checkpoint holds "
                           "that optimizer's state but this optimizer is %s; nothing loaded", LOAD_OP, path, kind,
                           kiln_optimizer_kind(opt));
    uint64_t s;
    if (!parse_u64(steps, &s) || s > INT64_MAX)
        return kiln__error(KILN_STATUS_FORMAT, "%s '%s': metadata optimizer.step = '%.32s' is not a step count (a "
                           "decimal integer from 0 to 2^63-1); nothing loaded", LOAD_OP, path, steps);
    *step = (int64_t)s;
    return KILN_STATUS_OK;
}

/* The optimizer's hyper-parameters and step count as they are now, to put back if
 * writing the tensors fails after they were replaced. */
typedef struct {
    kiln_metadata_entry *e;
    int n;
} saved_metadata;

static kiln_status save_metadata(kiln_optimizer *opt, saved_metadata *s) {
    int n = kiln_optimizer_metadata(opt, NULL, 0);
    s->e = calloc((size_t)(n > 0 ? n : 1), sizeof *s->e);
    if (!s->e || n < 0) return kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
    kiln_optimizer_metadata(opt, s->e, n);
    for (int i = 0; i < n; i++) {
        s->e[i].value = strdup(s->e[i].value);
        s->n++;
        if (!s->e[i].value) return kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
    }
    return KILN_STATUS_OK;
}

static void free_saved_metadata(saved_metadata *s) {
    for (int i = 0; i < s->n; i++) free((char *)s->e[i].value);
    free(s->e);
}

kiln_status kiln_checkpoint_load(const char *path, kiln_module *m, kiln_optimizer *opt, bool strict) {
    if (!path || !m)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %s is NULL", LOAD_OP, path ? "module" : "path");
    bool clean = kiln_last_status() == KILN_STATUS_OK;
    kiln_safetensors *f = kiln_safetensors_open(path);
    if (!f) return kiln_last_status();
    kiln_scope *s = kiln_scope_begin();
    name_list l = {0};
    kiln_tensor **staged = NULL;
    kiln_metadata_entry *om = NULL;
    int nom = 0;
    int64_t step = 0;
    saved_metadata undo = {0};
    uint64_t seed = 0, offset = 0;
    bool has_rng = false;

    /* 1. check: metadata, names, dtypes, shapes, then the values read into staging */
    kiln_status st = gather(&l, m, opt);
    int nmodel = kiln_module_num_state(m);
    if (st == KILN_STATUS_OK) st = check_rng(path, f, &has_rng, &seed, &offset);
    bool file_has_opt = false;
    for (int i = 0; i < kiln_safetensors_count(f); i++)
        file_has_opt |= has_prefix(kiln_safetensors_entry_at(f, i)->name, OPT_PREFIX);
    bool lenient = strict && !opt && file_has_opt;
    if (st == KILN_STATUS_OK && lenient) st = check_model_names(path, f, &l);
    bool load_opt = false;
    if (opt) {
        const kiln_metadata_entry *all;
        int nm = kiln_safetensors_metadata(f, &all);
        load_opt = file_has_opt;
        for (int i = 0; i < nm; i++) load_opt |= has_prefix(all[i].key, OPT_PREFIX);
    }
    if (st == KILN_STATUS_OK && load_opt) st = optimizer_metadata(path, f, opt, &om, &nom, &step);
    if (st == KILN_STATUS_OK && !(staged = calloc((size_t)l.n + 1, sizeof *staged)))
        st = kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
    if (st == KILN_STATUS_OK) st = kiln_safetensors_stage(f, l.t, l.n, strict && !lenient, staged);
    if (st == KILN_STATUS_OK && load_opt) st = check_optimizer_values(path, &l, nmodel, staged, step);

    /* 2. write: the hyper-parameters (the optimizer checks them and changes nothing
     * when one is bad), the tensors, the generator */
    if (st == KILN_STATUS_OK && load_opt) {
        st = save_metadata(opt, &undo);
        if (st == KILN_STATUS_OK && kiln_optimizer_load_metadata(opt, om, nom) != KILN_STATUS_OK) {
            char why[1024];
            snprintf(why, sizeof why, "%s", kiln_last_error());
            if (clean) kiln_clear_error();
            st = kiln__error(KILN_STATUS_FORMAT, "%s '%s': bad optimizer metadata: %s; nothing loaded", LOAD_OP, path,
                             why);
            load_opt = false; /* nothing to undo */
        }
    }
    if (st == KILN_STATUS_OK) {
        st = kiln_safetensors_commit(l.t, l.n, staged);
        if (st != KILN_STATUS_OK && load_opt) kiln_optimizer_load_metadata(opt, undo.e, undo.n);
    }
    if (st == KILN_STATUS_OK && has_rng) kiln_rng_set_state(seed, offset);
    free_saved_metadata(&undo);
    free(om);
    free(staged);
    list_free(&l);
    kiln_scope_end(s);
    kiln_safetensors_close(f);
    return st;
}

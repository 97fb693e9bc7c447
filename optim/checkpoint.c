/* Training checkpoints: a module's state_dict, an optimizer's state and the RNG
 * position in one safetensors file, so that a resumed run continues exactly and
 * PyTorch can read the model part by name. */
#include "../core/internal.h"

#include <inttypes.h>
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

kiln_status kiln_checkpoint_load(const char *path, kiln_module *m, kiln_optimizer *opt, bool strict) {
    if (!path || !m)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_checkpoint_load: %s is NULL", path ? "module" : "path");
    kiln_safetensors *f = kiln_safetensors_open(path);
    if (!f) return kiln_last_status();
    kiln_scope *s = kiln_scope_begin();
    name_list l = {0};
    kiln_status st = gather(&l, m, opt);
    /* Without an optimizer, its entries in the file are expected, not errors: check
     * the model's names here and load leniently. */
    bool file_has_opt = false;
    for (int i = 0; i < kiln_safetensors_count(f); i++)
        if (strncmp(kiln_safetensors_entry_at(f, i)->name, OPT_PREFIX, strlen(OPT_PREFIX)) == 0) file_has_opt = true;
    bool lenient = strict && !opt && file_has_opt;
    if (st == KILN_STATUS_OK && lenient) {
        for (int i = 0; i < l.n; i++)
            if (!kiln_safetensors_find(f, l.t[i].name)) {
                st = kiln__error(KILN_STATUS_SHAPE, "kiln_checkpoint_load: %s has no entry '%s' of the model",
                                 path, l.t[i].name);
                break;
            }
        for (int i = 0; st == KILN_STATUS_OK && i < kiln_safetensors_count(f); i++) {
            const char *name = kiln_safetensors_entry_at(f, i)->name;
            bool known = strncmp(name, OPT_PREFIX, strlen(OPT_PREFIX)) == 0;
            for (int j = 0; !known && j < l.n; j++) known = strcmp(l.t[j].name, name) == 0;
            if (!known)
                st = kiln__error(KILN_STATUS_SHAPE, "kiln_checkpoint_load: %s has an entry '%s' that the model does "
                                 "not have (pass strict=false to ignore it)", path, name);
        }
    }
    if (st == KILN_STATUS_OK) st = kiln_safetensors_load(path, l.t, l.n, strict && !lenient);
    if (st == KILN_STATUS_OK && opt) {
        const kiln_metadata_entry *all;
        int nm = kiln_safetensors_metadata(f, &all);
        kiln_metadata_entry *om = calloc((size_t)(nm ? nm : 1), sizeof *om);
        int k = 0;
        if (!om) st = kiln__error(KILN_STATUS_OOM, "checkpoint: out of host memory");
        for (int i = 0; om && i < nm; i++)
            if (strncmp(all[i].key, OPT_PREFIX, strlen(OPT_PREFIX)) == 0)
                om[k++] = (kiln_metadata_entry){all[i].key + strlen(OPT_PREFIX), all[i].value};
        if (st == KILN_STATUS_OK) st = kiln_optimizer_load_metadata(opt, om, k);
        free(om);
    }
    if (st == KILN_STATUS_OK) {
        const char *sd = kiln_safetensors_metadata_get(f, "kiln.rng_seed");
        const char *off = kiln_safetensors_metadata_get(f, "kiln.rng_offset");
        if (sd && off) kiln_rng_set_state(strtoull(sd, NULL, 10), strtoull(off, NULL, 10));
    }
    list_free(&l);
    kiln_scope_end(s);
    kiln_safetensors_close(f);
    return st;
}

/* The module tree: named parameters, buffers and children with torch's dotted
 * names and state_dict order, train/eval, and the two arenas (one contiguous
 * storage for every parameter of a tree, one for their gradients) that zero-grad,
 * fused optimizer updates and checkpoint I/O each walk as a single span. */
#include "../core/internal.h"
#include "module_internal.h"

#include <stdlib.h>

typedef struct {
    char *name;
    kiln_tensor *t;
} named_tensor;

/* One entry of the flattened state (torch's state_dict order), names relative to the module. */
typedef struct {
    char *name;
    kiln_tensor *t;
    bool is_buffer;
} state_entry;

struct kiln_module {
    char *type;
    char *name; /* key in the parent; "" for a root */
    kiln_module *parent;
    named_tensor *params, *buffers;
    int nparams, nbuffers, cap_params, cap_buffers;
    kiln_module **children; /* each child's key is its own name */
    int nchildren, cap_children;
    bool training;
    /* lean_self: the forward keeps none of its tensors beyond the call but its result
     * (kiln_module_set_lean); lean: that holds for the whole subtree, cached per epoch */
    bool lean_self, lean;
    uint64_t lean_epoch;
    kiln_module_forward_fn forward;
    void *ctx;
    void (*ctx_free)(void *);
    /* flattened state, rebuilt when the structure epoch moves */
    state_entry *state;
    int nstate, nstate_params;
    kiln_tensor **param_list; /* the parameters among state, in order */
    uint64_t state_epoch;
    /* arenas (a root that has been used): 1-d views of the whole storages */
    kiln_tensor *flat_params, *flat_grads;
};

/* Bumped on every structural change of any tree: caches compare against it. */
static uint64_t g_epoch = 1;

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static bool grow(void **v, int *cap, int n, size_t elsize) {
    if (n < *cap) return true;
    int nc = *cap ? *cap * 2 : 4;
    void *p = realloc(*v, (size_t)nc * elsize);
    if (!p) return false;
    *v = p;
    *cap = nc;
    return true;
}

/* ---- creation and naming --------------------------------------------------------- */

kiln_module *kiln_module_create(const char *type_name, kiln_module_forward_fn forward, void *ctx,
                                void (*ctx_free)(void *)) {
    kiln_module *m = calloc(1, sizeof *m);
    char *type = dup_str(type_name ? type_name : "Module"), *name = dup_str("");
    if (!m || !type || !name) {
        free(m);
        free(type);
        free(name);
        if (ctx_free) ctx_free(ctx);
        kiln__error(KILN_STATUS_OOM, "kiln_module_create: out of host memory");
        return NULL;
    }
    m->type = type;
    m->name = name;
    m->training = true;
    m->forward = forward;
    m->ctx = ctx;
    m->ctx_free = ctx_free;
    return m;
}

void *kiln_module_ctx(const kiln_module *m) { return m ? m->ctx : NULL; }
const char *kiln_module_type(const kiln_module *m) { return m ? m->type : NULL; }
kiln_module *kiln_module_parent(const kiln_module *m) { return m ? m->parent : NULL; }
int kiln_module_num_children(const kiln_module *m) { return m ? m->nchildren : 0; }

kiln_module *kiln_module_child_at(const kiln_module *m, int i, const char **name) {
    if (!m || i < 0 || i >= m->nchildren) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_child_at: index %d out of range (%d children)", i,
                    m ? m->nchildren : 0);
        return NULL;
    }
    if (name) *name = m->children[i]->name;
    return m->children[i];
}

static size_t path_into(const kiln_module *m, char *buf, size_t n) {
    if (!m->parent) {
        if (n) buf[0] = '\0';
        return 0;
    }
    size_t used = path_into(m->parent, buf, n);
    int w = snprintf(buf + (used < n ? used : n), used < n ? n - used : 0, "%s%s", used ? "." : "", m->name);
    return used + (size_t)(w > 0 ? w : 0);
}

const char *kiln_module_path(const kiln_module *m, char *buf, size_t n) {
    if (!buf || !n) return "";
    buf[0] = '\0';
    if (m) path_into(m, buf, n);
    return buf;
}

static kiln_module *root_of(kiln_module *m) {
    while (m->parent) m = m->parent;
    return m;
}

/* "module 'enc1.0' (Linear)" or "root module (Sequential)", for messages. */
const char *kiln__module_describe(const kiln_module *m, char *buf, size_t n) {
    char path[256];
    kiln_module_path(m, path, sizeof path);
    if (path[0]) snprintf(buf, n, "module '%s' (%s)", path, m->type);
    else snprintf(buf, n, "root module (%s)", m->type);
    return buf;
}

static bool name_taken(const kiln_module *m, const char *name) {
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->params[i].name, name)) return true;
    for (int i = 0; i < m->nbuffers; i++)
        if (!strcmp(m->buffers[i].name, name)) return true;
    for (int i = 0; i < m->nchildren; i++)
        if (!strcmp(m->children[i]->name, name)) return true;
    return false;
}

static bool check_name(const char *op, const kiln_module *m, const char *name) {
    char d[300];
    if (!name || !name[0] || strchr(name, '.')) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: name '%s' for %s must be non-empty and contain no '.'", op,
                    name ? name : "(null)", kiln__module_describe(m, d, sizeof d));
        return false;
    }
    if (name_taken(m, name)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %s already has a parameter, buffer or child named '%s'", op,
                    kiln__module_describe(m, d, sizeof d), name);
        return false;
    }
    return true;
}

/* ---- the tree ------------------------------------------------------------------- */

static void free_state(kiln_module *m) {
    for (int i = 0; i < m->nstate; i++) free(m->state[i].name);
    free(m->state);
    free(m->param_list);
    m->state = NULL;
    m->param_list = NULL;
    m->nstate = m->nstate_params = 0;
    m->state_epoch = 0;
}

static void free_tree(kiln_module *m) {
    for (int i = 0; i < m->nchildren; i++) free_tree(m->children[i]);
    for (int i = 0; i < m->nparams; i++) {
        kiln_tensor_free(m->params[i].t);
        free(m->params[i].name);
    }
    for (int i = 0; i < m->nbuffers; i++) {
        kiln_tensor_free(m->buffers[i].t);
        free(m->buffers[i].name);
    }
    kiln_tensor_free(m->flat_params);
    kiln_tensor_free(m->flat_grads);
    if (m->ctx_free) m->ctx_free(m->ctx);
    free_state(m);
    free(m->children);
    free(m->params);
    free(m->buffers);
    free(m->type);
    free(m->name);
    free(m);
}

void kiln_module_free(kiln_module *m) {
    if (!m) return;
    if (m->parent) {
        char d[300];
        kiln__error(KILN_STATUS_STATE, "kiln_module_free: %s belongs to its parent; free the root of the tree",
                    kiln__module_describe(m, d, sizeof d));
        return;
    }
    free_tree(m);
    g_epoch++;
}

kiln_status kiln_module_add(kiln_module *m, const char *name, kiln_module *child) {
    char d[300], d2[300];
    if (!m || !child) {
        if (child && !child->parent) free_tree(child);
        if (m)
            return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_add: child '%s' is NULL (its creation "
                               "failed)", name ? name : "(null)");
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_add: parent module is NULL");
    }
    /* A child that belongs to a tree (another parent, or m's own ancestors) is never freed here. */
    bool in_tree = child->parent != NULL;
    for (kiln_module *a = m; a && !in_tree; a = a->parent)
        if (a == child) in_tree = true;
    const char *why = child->parent ? "it is already a child of another module"
                      : in_tree     ? "that would make a cycle"
                      : child->flat_params
                          ? "its parameter arena was already built (it was run or finalized as a root); add modules "
                            "to their parent before using them"
                          : NULL;
    if (why) {
        kiln_status s = kiln__error(KILN_STATUS_STATE, "kiln_module_add: cannot add %s as '%s' under %s: %s",
                                    kiln__module_describe(child, d, sizeof d), name ? name : "(null)", kiln__module_describe(m, d2, sizeof d2),
                                    why);
        if (!in_tree) free_tree(child);
        return s;
    }
    char *nm = check_name("kiln_module_add", m, name) ? dup_str(name) : NULL;
    if (!nm || !grow((void **)&m->children, &m->cap_children, m->nchildren, sizeof *m->children)) {
        kiln_status s = nm ? kiln__error(KILN_STATUS_OOM, "kiln_module_add: out of host memory")
                           : kiln_last_status() != KILN_STATUS_OK
                               ? kiln_last_status()
                               : kiln__error(KILN_STATUS_OOM, "kiln_module_add: out of host memory");
        free(nm);
        free_tree(child);
        return s;
    }
    free(child->name);
    child->name = nm;
    child->parent = m;
    kiln_module_train(child, m->training);
    m->children[m->nchildren++] = child;
    g_epoch++;
    return KILN_STATUS_OK;
}

kiln_module *kiln_module_child(const kiln_module *m, const char *path) {
    if (!m || !path) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_child: %s is NULL", m ? "path" : "module");
        return NULL;
    }
    const kiln_module *cur = m;
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        const kiln_module *next = NULL;
        for (int i = 0; i < cur->nchildren && !next; i++)
            if (strlen(cur->children[i]->name) == len && !strncmp(cur->children[i]->name, p, len))
                next = cur->children[i];
        if (!next) {
            char d[300];
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_child: %s has no child '%.*s' (looking up '%s')",
                        kiln__module_describe(cur, d, sizeof d), (int)len, p, path);
            return NULL;
        }
        cur = next;
        p += len;
        if (*p == '.') p++;
    }
    return (kiln_module *)cur;
}

/* A module-owned copy of init: outside every scope, contiguous. */
static kiln_tensor *owned_copy(const char *op, kiln_module *m, const char *name, kiln_tensor *init, bool param) {
    char d[300];
    if (!m) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: module is NULL", op);
        return NULL;
    }
    if (!init) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: initial value of '%s' on %s is NULL (an earlier op failed)", op,
                    name ? name : "(null)", kiln__module_describe(m, d, sizeof d));
        return NULL;
    }
    if (param && !kiln__is_float(init->dtype)) {
        kiln__error(KILN_STATUS_DTYPE, "%s: parameter '%s' on %s has dtype %s; parameters are f32 or f64", op,
                    name ? name : "(null)", kiln__module_describe(m, d, sizeof d), kiln_dtype_name(init->dtype));
        return NULL;
    }
    if (!check_name(op, m, name)) return NULL;
    kiln_tensor *t = kiln__new(init->ndim, init->shape, init->dtype, init->device);
    if (!t) return NULL;
    if (kiln_tensor_copy_(t, init) != KILN_STATUS_OK) {
        kiln_tensor_free(t);
        return NULL;
    }
    kiln__tensor_disown(t);
    return t;
}

static kiln_tensor *add_tensor(const char *op, kiln_module *m, const char *name, kiln_tensor *init, bool param) {
    kiln_tensor *t = owned_copy(op, m, name, init, param);
    if (!t) return NULL;
    char *nm = dup_str(name);
    bool ok = nm && (param ? grow((void **)&m->params, &m->cap_params, m->nparams, sizeof *m->params)
                           : grow((void **)&m->buffers, &m->cap_buffers, m->nbuffers, sizeof *m->buffers));
    if (!ok) {
        free(nm);
        kiln_tensor_free(t);
        kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
        return NULL;
    }
    if (param) {
        t->requires_grad = true;
        m->params[m->nparams++] = (named_tensor){nm, t};
    } else {
        m->buffers[m->nbuffers++] = (named_tensor){nm, t};
    }
    g_epoch++;
    return t;
}

kiln_tensor *kiln_module_register_parameter(kiln_module *m, const char *name, kiln_tensor *init) {
    return add_tensor("kiln_module_register_parameter", m, name, init, true);
}

kiln_tensor *kiln_module_register_buffer(kiln_module *m, const char *name, kiln_tensor *init) {
    return add_tensor("kiln_module_register_buffer", m, name, init, false);
}

/* ---- flattened state (torch's state_dict order) ------------------------------------ */

typedef struct {
    state_entry *v;
    int n, cap;
    bool oom;
} state_builder;

static void push_entry(state_builder *b, const char *prefix, const char *name, kiln_tensor *t, bool is_buffer) {
    if (b->oom) return;
    if (!grow((void **)&b->v, &b->cap, b->n, sizeof *b->v)) {
        b->oom = true;
        return;
    }
    size_t len = strlen(prefix) + strlen(name) + 1;
    char *full = malloc(len);
    if (!full) {
        b->oom = true;
        return;
    }
    snprintf(full, len, "%s%s", prefix, name);
    b->v[b->n++] = (state_entry){full, t, is_buffer};
}

static void collect(state_builder *b, const kiln_module *m, const char *prefix) {
    for (int i = 0; i < m->nparams; i++) push_entry(b, prefix, m->params[i].name, m->params[i].t, false);
    for (int i = 0; i < m->nbuffers; i++) push_entry(b, prefix, m->buffers[i].name, m->buffers[i].t, true);
    for (int i = 0; i < m->nchildren && !b->oom; i++) {
        size_t len = strlen(prefix) + strlen(m->children[i]->name) + 2;
        char *p = malloc(len);
        if (!p) {
            b->oom = true;
            return;
        }
        snprintf(p, len, "%s%s.", prefix, m->children[i]->name);
        collect(b, m->children[i], p);
        free(p);
    }
}

static bool ensure_state(kiln_module *m) {
    if (m->state_epoch == g_epoch) return true;
    free_state(m);
    state_builder b = {0};
    collect(&b, m, "");
    kiln_tensor **pl = malloc((size_t)(b.n ? b.n : 1) * sizeof *pl);
    if (b.oom || !pl) {
        for (int i = 0; i < b.n; i++) free(b.v[i].name);
        free(b.v);
        free(pl);
        kiln__error(KILN_STATUS_OOM, "module: out of host memory listing parameters");
        return false;
    }
    int np = 0;
    for (int i = 0; i < b.n; i++)
        if (!b.v[i].is_buffer) pl[np++] = b.v[i].t;
    m->state = b.v;
    m->nstate = b.n;
    m->param_list = pl;
    m->nstate_params = np;
    m->state_epoch = g_epoch;
    return true;
}

/* Index in state of the i-th entry of one kind. */
static int nth_of_kind(const kiln_module *m, int i, bool buffer) {
    for (int k = 0; k < m->nstate; k++)
        if (m->state[k].is_buffer == buffer && i-- == 0) return k;
    return -1;
}

int kiln_module_num_parameters(kiln_module *m) { return m && ensure_state(m) ? m->nstate_params : 0; }
int kiln_module_num_buffers(kiln_module *m) { return m && ensure_state(m) ? m->nstate - m->nstate_params : 0; }
int kiln_module_num_state(kiln_module *m) { return m && ensure_state(m) ? m->nstate : 0; }

static kiln_tensor *entry(const char *op, kiln_module *m, int i, bool any, bool buffer, const char **name,
                          bool *is_buffer) {
    if (!m || !ensure_state(m)) {
        if (!m) kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: module is NULL", op);
        return NULL;
    }
    int k = any ? (i >= 0 && i < m->nstate ? i : -1) : (i >= 0 ? nth_of_kind(m, i, buffer) : -1);
    if (k < 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: index %d is out of range", op, i);
        return NULL;
    }
    if (name) *name = m->state[k].name;
    if (is_buffer) *is_buffer = m->state[k].is_buffer;
    return m->state[k].t;
}

kiln_tensor *kiln_module_parameter(kiln_module *m, int i, const char **name) {
    return entry("kiln_module_parameter", m, i, false, false, name, NULL);
}
kiln_tensor *kiln_module_buffer(kiln_module *m, int i, const char **name) {
    return entry("kiln_module_buffer", m, i, false, true, name, NULL);
}
kiln_tensor *kiln_module_state(kiln_module *m, int i, const char **name, bool *is_buffer) {
    return entry("kiln_module_state", m, i, true, false, name, is_buffer);
}

int64_t kiln_module_parameter_count(kiln_module *m) {
    if (!m || !ensure_state(m)) return 0;
    int64_t n = 0;
    for (int i = 0; i < m->nstate_params; i++) n += kiln_tensor_numel(m->param_list[i]);
    return n;
}

kiln_tensor *kiln_module_get(kiln_module *m, const char *name) {
    if (!m || !name) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_get: %s is NULL", m ? "name" : "module");
        return NULL;
    }
    if (!ensure_state(m)) return NULL;
    for (int k = 0; k < m->nstate; k++)
        if (!strcmp(m->state[k].name, name)) return m->state[k].t;
    char d[300];
    kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_get: %s has no parameter or buffer named '%s'",
                kiln__module_describe(m, d, sizeof d), name);
    return NULL;
}

/* ---- modes ------------------------------------------------------------------------ */

void kiln_module_train(kiln_module *m, bool on) {
    if (!m) return;
    m->training = on;
    for (int i = 0; i < m->nchildren; i++) kiln_module_train(m->children[i], on);
}

bool kiln_module_is_training(const kiln_module *m) { return m && m->training; }

/* ---- arenas ------------------------------------------------------------------------ */

/* True when every parameter already sits, in order, in the arenas. */
static bool arena_current(kiln_module *m, int64_t total) {
    if (!m->flat_params || kiln_tensor_numel(m->flat_params) != total) return false;
    int64_t es = (int64_t)kiln_dtype_size(m->flat_params->dtype), off = 0;
    for (int i = 0; i < m->nstate_params; i++) {
        kiln_tensor *p = m->param_list[i];
        if (p->storage != m->flat_params->storage || p->offset != m->flat_params->offset + off * es ||
            !kiln_tensor_is_contiguous(p) || !p->grad || p->grad->storage != m->flat_grads->storage ||
            p->grad->offset != m->flat_grads->offset + off * es || !kiln_tensor_is_contiguous(p->grad))
            return false;
        off += kiln_tensor_numel(p);
    }
    return true;
}

/* Moves src's values into base at element offset off and points src there. */
static kiln_status move_into(kiln_tensor *src, kiln_tensor *base, int64_t off) {
    int64_t es = (int64_t)kiln_dtype_size(base->dtype), strides[KILN_MAX_DIMS];
    kiln__contiguous_strides(src->ndim, src->shape, (size_t)es, strides);
    kiln_tensor *slot = kiln__view(base, src->ndim, src->shape, strides, base->offset + off * es);
    if (!slot) return kiln_last_status();
    kiln_status st = kiln_tensor_copy_(slot, src);
    kiln_tensor_free(slot);
    if (st == KILN_STATUS_OK) kiln__tensor_rebind(src, base, base->offset + off * es);
    return st;
}

static kiln_status build_arenas(kiln_module *m) {
    char d[300];
    if (m->parent)
        return kiln__error(KILN_STATUS_STATE, "module arenas: %s is not a root; the arenas belong to the root of the "
                           "tree (pass the root)", kiln__module_describe(m, d, sizeof d));
    if (!ensure_state(m)) return kiln_last_status();
    int64_t total = 0;
    kiln_dtype dt = KILN_F32;
    kiln_device dev = KILN_CPU;
    for (int i = 0; i < m->nstate_params; i++) {
        kiln_tensor *p = m->param_list[i];
        if (i == 0) {
            dt = p->dtype;
            dev = p->device;
        } else if (p->dtype != dt || !kiln_device_equal(p->device, dev)) {
            char a[200], b[200];
            return kiln__error(KILN_STATUS_DTYPE, "module arenas: parameters '%s' (%s) and '%s' (%s) of %s differ in "
                               "dtype or device; one tree keeps its parameters in one arena, so give them one dtype "
                               "and device", m->state[nth_of_kind(m, 0, false)].name, kiln_tensor_describe(m->param_list[0], a, sizeof a),
                               m->state[nth_of_kind(m, i, false)].name, kiln_tensor_describe(p, b, sizeof b),
                               kiln__module_describe(m, d, sizeof d));
        }
        total += kiln_tensor_numel(p);
    }
    if (arena_current(m, total)) return KILN_STATUS_OK;
    kiln_scope *s = kiln_scope_begin();
    if (!s) return kiln_last_status();
    kiln_status st = KILN_STATUS_OK;
    kiln_tensor *pa = kiln__new(1, &total, dt, dev), *ga = kiln__new(1, &total, dt, dev);
    if (!pa || !ga || kiln_tensor_fill(ga, 0.0) != KILN_STATUS_OK) st = kiln_last_status();
    int64_t off = 0;
    kiln_no_grad_begin();
    for (int i = 0; i < m->nstate_params && st == KILN_STATUS_OK; i++) {
        kiln_tensor *p = m->param_list[i];
        st = move_into(p, pa, off);
        if (st == KILN_STATUS_OK && p->grad) st = move_into(p->grad, ga, off);
        if (st == KILN_STATUS_OK && !p->grad) {
            int64_t es = (int64_t)kiln_dtype_size(dt), strides[KILN_MAX_DIMS];
            kiln__contiguous_strides(p->ndim, p->shape, (size_t)es, strides);
            kiln_tensor *g = kiln__view(ga, p->ndim, p->shape, strides, off * es);
            if (!g) st = kiln_last_status();
            else kiln__set_grad(p, g);
        }
        off += kiln_tensor_numel(p);
    }
    kiln_no_grad_end();
    if (st == KILN_STATUS_OK) {
        /* The flat tensors keep their pointers across repacks. */
        kiln_tensor *base[2] = {pa, ga}, **flat[2] = {&m->flat_params, &m->flat_grads};
        for (int k = 0; k < 2; k++) {
            if (*flat[k]) {
                (*flat[k])->shape[0] = total;
                (*flat[k])->dtype = dt;
                (*flat[k])->device = dev;
                kiln__tensor_rebind(*flat[k], base[k], 0);
            } else {
                kiln__tensor_disown(base[k]);
                *flat[k] = base[k];
            }
        }
    }
    kiln_scope_end(s);
    return st;
}

kiln_status kiln_module_finalize(kiln_module *m) {
    if (!m) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_finalize: module is NULL");
    return build_arenas(m);
}

kiln_status kiln_module_zero_grad(kiln_module *m) {
    if (!m) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_zero_grad: module is NULL");
    kiln_status st = build_arenas(root_of(m));
    if (st != KILN_STATUS_OK) return st;
    if (!m->parent) return kiln_tensor_fill(m->flat_grads, 0.0);
    /* a subtree: its parameters' slices */
    if (!ensure_state(m)) return kiln_last_status();
    for (int i = 0; i < m->nstate_params; i++) kiln_tensor_zero_grad(m->param_list[i]);
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_module_flat_parameters(kiln_module *m) {
    if (!m) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_flat_parameters: module is NULL");
        return NULL;
    }
    return build_arenas(m) == KILN_STATUS_OK ? m->flat_params : NULL;
}

kiln_tensor *kiln_module_flat_gradients(kiln_module *m) {
    if (!m) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_flat_gradients: module is NULL");
        return NULL;
    }
    return build_arenas(m) == KILN_STATUS_OK ? m->flat_grads : NULL;
}

/* ---- devices ------------------------------------------------------------------------ */

/* Points every tensor of ts (all sharing one storage) at a copy of that storage on dev. */
static kiln_status move_storage(kiln_tensor *const *ts, int n, kiln_device dev) {
    kiln_storage *old = ts[0]->storage;
    int64_t nbytes = (int64_t)old->nbytes;
    kiln_tensor *fresh = kiln__new(1, &nbytes, KILN_U8, dev);
    if (!fresh) return kiln_last_status();
    kiln_status st = kiln__memcpy(kiln__ptr(fresh), dev, old->data, old->device, old->nbytes);
    for (int i = 0; i < n && st == KILN_STATUS_OK; i++) {
        kiln_tensor *t = ts[i];
        int64_t off = t->offset;
        int64_t strides[KILN_MAX_DIMS];
        memcpy(strides, t->strides, sizeof strides);
        kiln__tensor_rebind(t, fresh, off);
        memcpy(t->strides, strides, sizeof strides); /* rebind assumes contiguous; keep the view's own */
        t->device = dev;
    }
    kiln_tensor_free(fresh); /* the storage lives on through the rebound tensors */
    return st;
}

static kiln_status move_buffers(kiln_module *m, kiln_device dev) {
    for (int i = 0; i < m->nbuffers; i++) {
        kiln_status st = move_storage(&m->buffers[i].t, 1, dev);
        if (st != KILN_STATUS_OK) return st;
    }
    for (int i = 0; i < m->nchildren; i++) {
        kiln_status st = move_buffers(m->children[i], dev);
        if (st != KILN_STATUS_OK) return st;
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_module_to(kiln_module *m, kiln_device dev) {
    char d[300];
    if (!m) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_to: module is NULL");
    if (m->parent)
        return kiln__error(KILN_STATUS_STATE, "kiln_module_to: %s is not a root; move the whole tree (pass its root)",
                           kiln__module_describe(m, d, sizeof d));
    if (!kiln__device_pool(dev)) return kiln_last_status(); /* no such device: NO_DEVICE with the reason */
    kiln_status st = build_arenas(m);
    if (st != KILN_STATUS_OK) return st;
    if (m->nstate_params && kiln_device_equal(m->flat_params->device, dev)) return move_buffers(m, dev);
    int n = m->nstate_params;
    kiln_tensor **group = calloc((size_t)n + 1, sizeof *group);
    if (!group) return kiln__error(KILN_STATUS_OOM, "kiln_module_to: out of host memory");
    kiln_scope *s = kiln_scope_begin();
    if (n) {
        group[0] = m->flat_params;
        for (int i = 0; i < n; i++) group[i + 1] = m->param_list[i];
        st = move_storage(group, n + 1, dev);
        if (st == KILN_STATUS_OK) {
            group[0] = m->flat_grads;
            for (int i = 0; i < n; i++) group[i + 1] = m->param_list[i]->grad;
            st = move_storage(group, n + 1, dev);
        }
    }
    if (st == KILN_STATUS_OK) st = move_buffers(m, dev);
    kiln_scope_end(s);
    free(group);
    return st;
}

/* ---- forward ----------------------------------------------------------------------- */

kiln_status kiln_module_set_lean(kiln_module *m, bool on) {
    if (!m) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_set_lean: module is NULL");
    m->lean_self = on;
    g_epoch++; /* the cached subtree answers of m's ancestors change */
    return KILN_STATUS_OK;
}

/* Lean when m and every descendant are: one module that may keep its tensors (a
 * custom or Python forward) makes its ancestors keep everything, as before. */
static bool subtree_lean(kiln_module *m) {
    if (m->lean_epoch == g_epoch) return m->lean;
    bool lean = m->lean_self;
    for (int i = 0; i < m->nchildren; i++) lean = subtree_lean(m->children[i]) && lean;
    m->lean = lean;
    m->lean_epoch = g_epoch;
    return lean;
}

bool kiln_module_is_lean(kiln_module *m) { return m && subtree_lean(m); }

/* The lean forward running on this thread: its module and the scope it runs in. */
typedef struct {
    kiln_module *m;
    kiln_scope *s;
} lean_frame;
static _Thread_local lean_frame g_frame;

bool kiln_module_discard(kiln_module *self, kiln_tensor *t) {
    kiln_scope *s = g_frame.s;
    /* Only inside self's own lean forward, only tensors that forward made, and only
     * while the tape holds nothing of this call (then nothing can read t again). */
    if (!self || !t || g_frame.m != self || kiln__scope_current() != s || t->scope != s || s->nodes || t->grad_fn)
        return false;
    kiln_tensor_free(t);
    return true;
}

/* A lean forward runs in a scope of its own. When the tape recorded nothing inside it
 * (grad off, or no input and no parameter requiring grad), its result moves out and
 * every other tensor it made dies now; otherwise the tape needs them and the scope is
 * merged into the caller's, which is exactly the non-lean behaviour. */
static kiln_tensor *lean_forward(kiln_module *m, kiln_tensor *x) {
    kiln_scope *s = kiln_scope_begin();
    if (!s) return NULL;
    lean_frame saved = g_frame;
    g_frame = (lean_frame){m, s};
    kiln_tensor *y = m->forward(m, x);
    g_frame = saved;
    if (kiln__scope_current() != s) return y; /* the forward left scopes open: leave them (and s) as they are */
    if (s->nodes) {
        kiln__scope_merge(s);
        return y;
    }
    if (y && y->scope == s) kiln_scope_keep(y);
    kiln_scope_end(s);
    return y;
}

kiln_tensor *kiln_module_forward(kiln_module *m, kiln_tensor *x) {
    char d[300];
    if (!m) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_forward: module is NULL (its creation failed?)");
        return NULL;
    }
    if (!x) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_module_forward: input of %s is NULL (an earlier op failed)",
                    kiln__module_describe(m, d, sizeof d));
        return NULL;
    }
    if (!m->forward) {
        kiln__error(KILN_STATUS_STATE, "kiln_module_forward: %s has no forward function; it is a container, call "
                    "its children", kiln__module_describe(m, d, sizeof d));
        return NULL;
    }
    /* A root packs its parameters before the first step so gradients land in the arena. */
    if (!m->parent && build_arenas(m) != KILN_STATUS_OK) return NULL;
    return subtree_lean(m) ? lean_forward(m, x) : m->forward(m, x);
}

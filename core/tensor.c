/* Tensors and scopes: creation, geometry queries, host transfers, ownership. A
 * tensor's host struct is malloc'd and listed in its scope; its bytes come from
 * the device pool through reference-counted storage shared by views. */
#include "internal.h"
#include "../kernels/dtype_math.h"
#include "cuda_device.h"

#include <math.h>
#include <stdlib.h>

/* ---- scopes ------------------------------------------------------------------- */

static _Thread_local kiln_scope g_root = {.is_root = true};
static _Thread_local kiln_scope *g_current;

static kiln_scope *current_scope(void) { return g_current ? g_current : &g_root; }

static void scope_link(kiln_scope *s, kiln_tensor *t) {
    t->scope = s;
    t->scope_prev = NULL;
    t->scope_next = s->tensors;
    if (s->tensors) s->tensors->scope_prev = t;
    s->tensors = t;
}

static void scope_unlink(kiln_tensor *t) {
    kiln_scope *s = t->scope;
    if (!s) return;
    if (t->scope_prev) t->scope_prev->scope_next = t->scope_next;
    else s->tensors = t->scope_next;
    if (t->scope_next) t->scope_next->scope_prev = t->scope_prev;
    t->scope = NULL;
    t->scope_prev = t->scope_next = NULL;
}

void kiln__scope_add_node(kiln_node *n) {
    kiln_scope *s = current_scope();
    n->scope = s;
    n->scope_next = s->nodes;
    s->nodes = n;
}

kiln_scope *kiln_scope_begin(void) {
    kiln_scope *s = calloc(1, sizeof *s);
    if (!s) {
        kiln__error(KILN_STATUS_OOM, "kiln_scope_begin: out of host memory");
        return NULL;
    }
    s->parent = current_scope();
    g_current = s;
    return s;
}

static void storage_release(kiln_storage *st) {
    if (!st || --st->refcount > 0) return;
    if (st->block) {
        kiln_pool *p = kiln__device_pool(st->device);
        if (p) kiln_pool_free(p, st->block);
    }
    if (st->deleter) st->deleter(st->deleter_ctx);
    free(st);
}

static void tensor_destroy(kiln_tensor *t) {
    if (t->grad_fn && t->grad_fn->output == t) t->grad_fn->output = NULL;
    if (t->grad) tensor_destroy(t->grad);
    storage_release(t->storage);
    free(t);
}

void kiln__node_free(kiln_node *n);

static void scope_clear(kiln_scope *s) {
    /* Nodes first: they only point at tensors. Outer tensors never point at these
     * nodes because kiln_scope_keep detaches what it moves out. */
    kiln_node *n = s->nodes;
    while (n) {
        kiln_node *next = n->scope_next;
        kiln__node_free(n);
        n = next;
    }
    s->nodes = NULL;
    kiln_tensor *t = s->tensors;
    while (t) {
        kiln_tensor *next = t->scope_next;
        tensor_destroy(t);
        t = next;
    }
    s->tensors = NULL;
}

void kiln_scope_end(kiln_scope *s) {
    if (!s) return;
    /* s may be a scope that already ended (and was freed): only compare it with the
     * open scopes until it is found among them, never read through it before. */
    bool found = false;
    for (kiln_scope *c = current_scope(); c && !c->is_root; c = c->parent)
        if (c == s) found = true;
    if (!found) {
        kiln__error(KILN_STATUS_STATE, "kiln_scope_end: scope is not open on this thread (ended twice?)");
        return;
    }
    while (current_scope() != s) {
        kiln_scope *inner = current_scope();
        g_current = inner->parent;
        scope_clear(inner);
        free(inner);
    }
    g_current = s->parent == &g_root ? NULL : s->parent;
    scope_clear(s);
    free(s);
}

kiln_scope *kiln__scope_current(void) { return current_scope(); }

void kiln__scope_merge(kiln_scope *s) {
    kiln_scope *parent = s->parent;
    kiln_tensor *tail = NULL;
    for (kiln_tensor *t = s->tensors; t; t = t->scope_next) {
        t->scope = parent;
        tail = t;
    }
    if (tail) {
        tail->scope_next = parent->tensors;
        if (parent->tensors) parent->tensors->scope_prev = tail;
        parent->tensors = s->tensors;
    }
    kiln_node *ntail = NULL;
    for (kiln_node *n = s->nodes; n; n = n->scope_next) {
        n->scope = parent;
        ntail = n;
    }
    if (ntail) {
        ntail->scope_next = parent->nodes;
        parent->nodes = s->nodes;
    }
    g_current = parent == &g_root ? NULL : parent;
    free(s);
}

kiln_tensor *kiln_scope_keep(kiln_tensor *t) {
    if (!t || !t->scope) return t;
    kiln_scope *dest = t->scope->parent ? t->scope->parent : t->scope;
    scope_unlink(t);
    scope_link(dest, t);
    /* Its node dies with the inner scope: cut t from the tape as kiln_tensor_detach
     * would. A computed tensor stops requiring grad (else later backward calls would
     * treat it as a leaf and accumulate into it); a leaf keeps its flag. */
    if (t->grad_fn) {
        t->grad_fn = NULL;
        t->requires_grad = false;
        t->kept = true;
    }
    return t;
}

void kiln_tensor_free(kiln_tensor *t) {
    if (!t) return;
    if (t->is_grad) {
        /* its leaf owns it and would be left pointing at freed memory */
        kiln__error(KILN_STATUS_STATE, "kiln_tensor_free: this tensor is a gradient owned by its leaf; use "
                    "kiln_tensor_zero_grad() on the leaf instead");
        return;
    }
    scope_unlink(t);
    tensor_destroy(t);
}

void kiln__set_grad(kiln_tensor *leaf, kiln_tensor *g) {
    if (leaf->grad && leaf->grad != g) tensor_destroy(leaf->grad);
    if (g) {
        scope_unlink(g);
        g->is_grad = true;
    }
    leaf->grad = g;
}

/* Module-owned tensors (parameters, buffers, arenas) live outside every scope. */
void kiln__tensor_disown(kiln_tensor *t) {
    if (t) scope_unlink(t);
}

void kiln__tensor_rebind(kiln_tensor *t, kiln_tensor *base, int64_t offset) {
    base->storage->refcount++;
    storage_release(t->storage);
    t->storage = base->storage;
    t->offset = offset;
    kiln__contiguous_strides(t->ndim, t->shape, kiln_dtype_size(t->dtype), t->strides);
}

void kiln_shutdown(void) {
    while (g_current) kiln_scope_end(g_current);
    scope_clear(&g_root);
    kiln__shutdown_pools();
}

/* ---- construction ------------------------------------------------------------- */

int64_t kiln__numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

void kiln__contiguous_strides(int ndim, const int64_t *shape, size_t elsize, int64_t *strides) {
    int64_t s = (int64_t)elsize;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 1 ? shape[i] : 1;
    }
}

bool kiln__numel_checked(int ndim, const int64_t *shape, int64_t *numel) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (!kiln__mul_i64(n, shape[i], &n)) return false;
    *numel = n;
    return true;
}

bool kiln__check_extent(const char *op, int ndim, const int64_t *shape, size_t elsize) {
    int64_t n = (int64_t)elsize;
    for (int i = 0; i < ndim; i++) {
        if (!kiln__mul_i64(n, shape[i] > 1 ? shape[i] : 1, &n)) {
            char b[160];
            kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                        "%s: shape %s of %zu-byte elements is too large: its size overflows 64-bit arithmetic "
                        "(sizes times the element size must stay below 2^63 bytes)",
                        op, kiln__shape_str(ndim, shape, b, sizeof b), elsize);
            return false;
        }
    }
    return true;
}

static bool check_shape(const char *op, int ndim, const int64_t *shape, kiln_dtype dt) {
    if (ndim < 0 || ndim > KILN_MAX_DIMS) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d dimensions requested; kiln tensors have 0..%d", op, ndim,
                    KILN_MAX_DIMS);
        return false;
    }
    if (ndim && !shape) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: shape is NULL for a %d-d tensor", op, ndim);
        return false;
    }
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char b[128];
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: shape %s has a negative size at axis %d", op,
                        kiln__shape_str(ndim, shape, b, sizeof b), i);
            return false;
        }
    }
    if ((unsigned)dt >= KILN_DTYPE_COUNT) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: dtype %d is not a kiln_dtype", op, (int)dt);
        return false;
    }
    return kiln__check_extent(op, ndim, shape, kiln_dtype_size(dt));
}

static kiln_tensor *alloc_struct(int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev) {
    kiln_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        kiln__error(KILN_STATUS_OOM, "out of host memory for a tensor header");
        return NULL;
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->dtype = dt;
    t->device = dev;
    return t;
}

/* A contiguous tensor not yet owned by any scope. */
static kiln_tensor *new_unowned(const char *op, int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev) {
    if (!check_shape(op, ndim, shape, dt)) return NULL;
    kiln_pool *pool = kiln__device_pool(dev);
    if (!pool) return NULL;
    size_t nbytes = (size_t)kiln__numel(ndim, shape) * kiln_dtype_size(dt);
    kiln_pool_block *b = kiln_pool_alloc(pool, nbytes);
    if (!b) return NULL;
    kiln_storage *st = calloc(1, sizeof *st);
    kiln_tensor *t = alloc_struct(ndim, shape, dt, dev);
    if (!st || !t) {
        free(st);
        free(t);
        kiln_pool_free(pool, b);
        kiln__error(KILN_STATUS_OOM, "out of host memory for a tensor header");
        return NULL;
    }
    st->block = b;
    st->data = kiln_pool_block_ptr(b);
    st->nbytes = nbytes;
    st->device = dev;
    st->refcount = 1;
    t->storage = st;
    kiln__contiguous_strides(ndim, shape, kiln_dtype_size(dt), t->strides);
    return t;
}

kiln_tensor *kiln__new(int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev) {
    kiln_tensor *t = new_unowned("kiln_tensor_empty", ndim, shape, dt, dev);
    if (t) scope_link(current_scope(), t);
    return t;
}

kiln_tensor *kiln__new_like(const kiln_tensor *t) { return kiln__new(t->ndim, t->shape, t->dtype, t->device); }

kiln_tensor *kiln__new_owned(const kiln_tensor *like) {
    return new_unowned("gradient", like->ndim, like->shape, like->dtype, like->device);
}

kiln_tensor *kiln__view(kiln_tensor *base, int ndim, const int64_t *shape, const int64_t *strides, int64_t offset) {
    if (!kiln__check_extent("view", ndim, shape, kiln_dtype_size(base->dtype))) return NULL;
    kiln_tensor *t = alloc_struct(ndim, shape, base->dtype, base->device);
    if (!t) return NULL;
    for (int i = 0; i < ndim; i++) t->strides[i] = strides[i];
    t->offset = offset;
    t->storage = base->storage;
    t->storage->refcount++;
    scope_link(current_scope(), t);
    return t;
}

kiln_tensor *kiln_tensor_empty(int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev) {
    return kiln__new(ndim, shape, dt, dev);
}

kiln_tensor *kiln_tensor_full(int ndim, const int64_t *shape, double value, kiln_dtype dt, kiln_device dev) {
    kiln_tensor *t = kiln__new(ndim, shape, dt, dev);
    if (t && kiln_tensor_fill(t, value) != KILN_STATUS_OK) {
        kiln_tensor_free(t);
        return NULL;
    }
    return t;
}

kiln_tensor *kiln_tensor_zeros(int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev) {
    return kiln_tensor_full(ndim, shape, 0.0, dt, dev);
}

kiln_tensor *kiln_tensor_scalar(double value, kiln_dtype dt, kiln_device dev) {
    return kiln_tensor_full(0, NULL, value, dt, dev);
}

kiln_tensor *kiln_tensor_from_host(const void *data, int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev) {
    if (!data) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_from_host: data is NULL");
        return NULL;
    }
    kiln_tensor *t = kiln__new(ndim, shape, dt, dev);
    if (!t) return NULL;
    if (kiln__memcpy(kiln__ptr(t), dev, data, KILN_CPU, t->storage->nbytes) != KILN_STATUS_OK) {
        kiln_tensor_free(t);
        return NULL;
    }
    return t;
}

kiln_status kiln_tensor_to_host(const kiln_tensor *t, void *dst, size_t nbytes) {
    if (!t || !dst)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_to_host: %s is NULL", t ? "dst" : "tensor");
    size_t need = (size_t)kiln_tensor_numel(t) * kiln_dtype_size(t->dtype);
    if (nbytes != need) {
        char b[128];
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                           "kiln_tensor_to_host: buffer of %zu bytes for a %s %s tensor, which needs %zu", nbytes,
                           kiln_dtype_name(t->dtype), kiln__shape_str(t->ndim, t->shape, b, sizeof b), need);
    }
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *c = kiln_tensor_contiguous((kiln_tensor *)t);
    kiln_status st = c ? kiln__memcpy(dst, KILN_CPU, kiln__ptr(c), c->device, need) : kiln_last_status();
    kiln_scope_end(s);
    return st;
}

/* ---- queries ---------------------------------------------------------------------- */

int kiln_tensor_ndim(const kiln_tensor *t) { return t ? t->ndim : -1; }

/* A 0-d tensor has no axis to ask about (kiln__axis accepts axis 0 there, as
 * reductions do); answer -1 with an error rather than silently. */
static bool query_axis(const char *fn, const kiln_tensor *t, int i, int *a) {
    if (!t) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: tensor is NULL", fn);
        return false;
    }
    if (t->ndim == 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: a 0-d tensor has no axis %d", fn, i);
        return false;
    }
    return kiln__axis(fn, i, t->ndim, a);
}

int64_t kiln_tensor_size(const kiln_tensor *t, int i) {
    int a;
    if (!query_axis("kiln_tensor_size", t, i, &a)) return -1;
    return t->shape[a];
}

const int64_t *kiln_tensor_shape(const kiln_tensor *t) { return t ? t->shape : NULL; }

int64_t kiln_tensor_stride(const kiln_tensor *t, int i) {
    int a;
    if (!query_axis("kiln_tensor_stride", t, i, &a)) return -1;
    return t->strides[a] / (int64_t)kiln_dtype_size(t->dtype);
}

int64_t kiln_tensor_numel(const kiln_tensor *t) { return t ? kiln__numel(t->ndim, t->shape) : 0; }
kiln_dtype kiln_tensor_dtype(const kiln_tensor *t) { return t ? t->dtype : KILN_F32; }
kiln_device kiln_tensor_device(const kiln_tensor *t) { return t ? t->device : KILN_CPU; }
void *kiln_tensor_data(const kiln_tensor *t) { return t ? kiln__ptr(t) : NULL; }

bool kiln_tensor_is_contiguous(const kiln_tensor *t) {
    if (!t) return false;
    if (kiln_tensor_numel(t) == 0) return true; /* nothing to lay out: as torch */
    int64_t s = (int64_t)kiln_dtype_size(t->dtype);
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

static double load_as_double(const void *p, kiln_dtype dt) { return kiln_load_as_double((const char *)p, dt); }

double kiln_tensor_item(const kiln_tensor *t) {
    if (!t) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_item: tensor is NULL");
        return NAN;
    }
    if (kiln_tensor_numel(t) != 1) {
        char b[128];
        kiln__error(KILN_STATUS_SHAPE, "kiln_tensor_item: tensor of shape %s has %lld elements; item() needs one",
                    kiln__shape_str(t->ndim, t->shape, b, sizeof b), (long long)kiln_tensor_numel(t));
        return NAN;
    }
    unsigned char buf[8];
    if (kiln__memcpy(buf, KILN_CPU, kiln__ptr(t), t->device, kiln_dtype_size(t->dtype)) != KILN_STATUS_OK)
        return NAN;
    return load_as_double(buf, t->dtype);
}

const char *kiln_tensor_describe(const kiln_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "NULL");
        return buf;
    }
    char s[160], d[16];
    snprintf(buf, n, "%s%s %s", kiln_dtype_name(t->dtype), kiln__shape_str(t->ndim, t->shape, s, sizeof s),
             kiln_device_name(t->device, d, sizeof d));
    return buf;
}

void kiln_tensor_print(const kiln_tensor *t, FILE *f) {
    char desc[200];
    fprintf(f, "tensor %s", kiln_tensor_describe(t, desc, sizeof desc));
    if (!t) {
        fputc('\n', f);
        return;
    }
    if (t->requires_grad) fprintf(f, " requires_grad");
    fprintf(f, "\n");
    int64_t n = kiln_tensor_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    unsigned char *host = malloc(n ? (size_t)n * es : 1);
    if (!host || kiln_tensor_to_host(t, host, (size_t)n * es) != KILN_STATUS_OK) {
        fprintf(f, "  <values unavailable: %s>\n", kiln_last_error());
        free(host);
        return;
    }
    int64_t row = t->ndim ? t->shape[t->ndim - 1] : 1;
    const int64_t edge = 3, max_full = 64;
    fprintf(f, "  [");
    for (int64_t i = 0; i < n; i++) {
        if (n > max_full && i == edge) {
            fprintf(f, " ...");
            i = n - edge - 1;
            continue;
        }
        if (i && row && i % row == 0) fprintf(f, "\n   ");
        fprintf(f, " %.6g", load_as_double(host + (size_t)i * es, t->dtype));
    }
    fprintf(f, " ]\n");
    free(host);
}

/* ---- external memory and detached scopes (for bindings) ------------------------------- */

kiln_tensor *kiln_tensor_from_external(void *data, int ndim, const int64_t *shape, const int64_t *strides_in_elements,
                                       kiln_dtype dt, kiln_device dev, void (*deleter)(void *ctx), void *ctx) {
    const char *op = "kiln_tensor_from_external";
    if (!check_shape(op, ndim, shape, dt)) return NULL;
    if (dev.type != KILN_DEVICE_CPU && !kiln_device_available(dev)) {
        char d[16];
        kiln__error(KILN_STATUS_NO_DEVICE, "%s: memory on %s, which this build or machine does not have", op,
                    kiln_device_name(dev, d, sizeof d));
        return NULL;
    }
    int64_t numel = kiln__numel(ndim, shape);
    if (!data && numel > 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: data is NULL for %lld elements", op, (long long)numel);
        return NULL;
    }
    size_t es = kiln_dtype_size(dt);
    int64_t strides[KILN_MAX_DIMS], last = 0; /* last: element offset of the farthest element */
    for (int i = 0; i < ndim; i++) {
        int64_t s = strides_in_elements ? strides_in_elements[i] : 0;
        if (s < 0) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: stride %lld at axis %d is negative; kiln views need "
                        "non-negative strides (make a copy with the axis flipped first)", op, (long long)s, i);
            return NULL;
        }
        int64_t span = 0;
        if (!kiln__mul_i64(s, (int64_t)es, &strides[i]) ||
            (shape[i] > 0 && (!kiln__mul_i64(shape[i] - 1, s, &span) || !kiln__add_i64(last, span, &last)))) {
            char b[160];
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: shape %s with stride %lld at axis %d spans more than "
                        "2^63 bytes", op, kiln__shape_str(ndim, shape, b, sizeof b), (long long)s, i);
            return NULL;
        }
    }
    if (strides_in_elements && numel > 0 && (last >= INT64_MAX / (int64_t)es)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: the strided memory spans more than 2^63 bytes", op);
        return NULL;
    }
    if (!strides_in_elements) kiln__contiguous_strides(ndim, shape, es, strides);
    else if (numel == 0) last = -1;
    kiln_storage *st = calloc(1, sizeof *st);
    kiln_tensor *t = alloc_struct(ndim, shape, dt, dev);
    if (!st || !t) {
        free(st);
        free(t);
        kiln__error(KILN_STATUS_OOM, "%s: out of host memory for a tensor header", op);
        return NULL;
    }
    st->data = data;
    st->nbytes = strides_in_elements ? (size_t)(last + 1) * es : (size_t)numel * es;
    st->device = dev;
    st->refcount = 1;
    st->deleter = deleter;
    st->deleter_ctx = ctx;
    t->storage = st;
    for (int i = 0; i < ndim; i++) t->strides[i] = strides[i];
    scope_link(current_scope(), t);
    return t;
}

kiln_status kiln_scope_detach(kiln_scope *s) {
    if (!s || s->is_root || current_scope() != s)
        return kiln__error(KILN_STATUS_STATE, "kiln_scope_detach: the scope is not the innermost open scope of this "
                           "thread (end inner scopes first)");
    g_current = s->parent == &g_root ? NULL : s->parent;
    s->parent = NULL; /* marks it detached: open scopes always have a parent */
    return KILN_STATUS_OK;
}

void kiln_scope_free(kiln_scope *s) {
    if (!s) return;
    if (s->is_root || s->parent) {
        kiln__error(KILN_STATUS_STATE, "kiln_scope_free: the scope is still open; end it with kiln_scope_end");
        return;
    }
    scope_clear(s);
    free(s);
}

/* Dispatch and the tape: kiln__run executes an op's kernel for the output's device
 * and records a node when gradients are wanted; kiln_backward walks the recorded
 * nodes in reverse topological order and accumulates into the leaves. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

static _Thread_local int g_no_grad_depth;
static _Thread_local bool g_anomaly;
static _Thread_local uint64_t g_visit_epoch;

void kiln_no_grad_begin(void) { g_no_grad_depth++; }
void kiln_no_grad_end(void) {
    if (g_no_grad_depth > 0) g_no_grad_depth--;
}
bool kiln_grad_enabled(void) { return g_no_grad_depth == 0; }
bool kiln__grad_mode(void) { return g_no_grad_depth == 0; }
void kiln_set_anomaly_mode(bool on) { g_anomaly = on; }
bool kiln_anomaly_mode(void) { return g_anomaly; }

void kiln__scope_add_node(kiln_node *n);

void kiln__node_free(kiln_node *n) {
    if (n->output && n->output->grad_fn == n) n->output->grad_fn = NULL;
    free(n->inputs);
    free(n->needs_grad);
    free(n->attrs);
    free(n);
}

kiln_status kiln__kernel_noop(const kiln_op_call *call) {
    (void)call;
    return KILN_STATUS_OK;
}

/* Anomaly mode: scan a float output for NaN/Inf. */
static bool has_nonfinite(kiln_tensor *t) {
    if (!kiln__is_float(t->dtype)) return false;
    int64_t n = kiln_tensor_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    void *host = malloc(n ? (size_t)n * es : 1);
    if (!host) return false;
    bool bad = false;
    if (kiln_tensor_to_host(t, host, (size_t)n * es) == KILN_STATUS_OK) {
        for (int64_t i = 0; i < n && !bad; i++) {
            double v = t->dtype == KILN_F32 ? ((float *)host)[i] : ((double *)host)[i];
            bad = !isfinite(v);
        }
    }
    free(host);
    return bad;
}

static kiln_status record(const kiln_op_def *op, int nin, kiln_tensor *const *in, kiln_tensor *out,
                          const void *attrs) {
    bool any = false;
    for (int i = 0; i < nin; i++) any |= in[i] && in[i]->requires_grad;
    if (!any) return KILN_STATUS_OK;
    kiln_node *n = calloc(1, sizeof *n);
    kiln_tensor **inputs = calloc((size_t)nin, sizeof *inputs);
    bool *ng = calloc((size_t)nin, sizeof *ng);
    void *a = op->attrs_size ? malloc(op->attrs_size) : NULL;
    if (!n || !inputs || !ng || (op->attrs_size && !a)) {
        free(n);
        free(inputs);
        free(ng);
        free(a);
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory recording the tape", op->name);
    }
    for (int i = 0; i < nin; i++) {
        inputs[i] = in[i];
        ng[i] = in[i] && in[i]->requires_grad;
    }
    if (a) memcpy(a, attrs, op->attrs_size);
    n->op = op;
    n->nin = nin;
    n->inputs = inputs;
    n->needs_grad = ng;
    n->attrs = a;
    n->output = out;
    kiln__scope_add_node(n);
    out->requires_grad = true;
    out->grad_fn = n;
    return KILN_STATUS_OK;
}

kiln_tensor *kiln__run(const kiln_op_def *op, int nin, kiln_tensor *const *in, kiln_tensor *out,
                       const void *attrs) {
    if (!out) return NULL;
    const char *name = op->label && attrs ? op->label(attrs) : op->name;
    kiln_kernel_fn k = kiln__kernel(op, out->device.type);
    if (!k) {
        char d[16];
        kiln__error(KILN_STATUS_DEVICE, "%s: no kernel for %s in this build; run it on the cpu device", name,
                    kiln_device_name(out->device, d, sizeof d));
        kiln_tensor_free(out);
        return NULL;
    }
    kiln_op_call call = {op, nin, in, out, attrs};
    /* An empty output has nothing to compute, whatever the sizes of its other axes
     * (a [2^62, 0] tensor): no kernel runs, on any device. */
    if (kiln_tensor_numel(out) != 0 && k(&call) != KILN_STATUS_OK) {
        kiln_tensor_free(out);
        return NULL;
    }
    if (g_anomaly && has_nonfinite(out)) {
        char b[200];
        kiln__error(KILN_STATUS_ANOMALY, "anomaly mode: %s (registry op %s) produced NaN or Inf in its %s output",
                    name, op->name, kiln_tensor_describe(out, b, sizeof b));
        kiln_tensor_free(out);
        return NULL;
    }
    if (kiln__grad_mode() && !op->not_differentiable && record(op, nin, in, out, attrs) != KILN_STATUS_OK) {
        kiln_tensor_free(out);
        return NULL;
    }
    return out;
}

void kiln__save(kiln_tensor *out, int slot, kiln_tensor *t) {
    if (out && out->grad_fn && slot >= 0 && slot < KILN_NODE_MAX_SAVED) out->grad_fn->saved[slot] = t;
}

/* ---- backward ------------------------------------------------------------------ */

kiln_tensor *kiln__new_owned(const kiln_tensor *like);
kiln_status kiln__copy_into(kiln_tensor *dst, kiln_tensor *src);
kiln_status kiln__add_into(kiln_tensor *dst, kiln_tensor *src);

kiln_status kiln__accumulate_grad(kiln_tensor *leaf, kiln_tensor *g) {
    if (!leaf->grad) {
        kiln_tensor *ng = kiln__new_owned(leaf);
        if (!ng) return kiln_last_status();
        kiln__set_grad(leaf, ng);
        return kiln__copy_into(leaf->grad, g);
    }
    return kiln__add_into(leaf->grad, g);
}

static bool same_shape(const kiln_tensor *a, const kiln_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

/* Post-order of the nodes reachable from root (iterative: graphs can be deep). */
static kiln_node **topo_order(kiln_node *root, int *count) {
    size_t cap = 64, n = 0, sp = 0, scap = 64;
    kiln_node **order = malloc(cap * sizeof *order);
    struct frame { kiln_node *node; int next; } *stack = malloc(scap * sizeof *stack);
    if (!order || !stack) goto oom;
    uint64_t epoch = ++g_visit_epoch;
    root->visit_mark = epoch;
    stack[sp++] = (struct frame){root, 0};
    while (sp) {
        struct frame *f = &stack[sp - 1];
        if (f->next < f->node->nin) {
            kiln_tensor *in = f->node->inputs[f->next++];
            kiln_node *c = in ? in->grad_fn : NULL;
            if (c && c->visit_mark != epoch) {
                c->visit_mark = epoch;
                if (sp == scap) {
                    scap *= 2;
                    void *p = realloc(stack, scap * sizeof *stack);
                    if (!p) goto oom;
                    stack = p;
                }
                stack[sp++] = (struct frame){c, 0};
            }
        } else {
            if (n == cap) {
                cap *= 2;
                void *p = realloc(order, cap * sizeof *order);
                if (!p) goto oom;
                order = p;
            }
            order[n++] = f->node;
            sp--;
        }
    }
    free(stack);
    *count = (int)n;
    return order;
oom:
    free(order);
    free(stack);
    kiln__error(KILN_STATUS_OOM, "kiln_backward: out of host memory walking the tape");
    return NULL;
}

kiln_status kiln_backward(kiln_tensor *root, kiln_tensor *grad_output) {
    return kiln_backward_ex(root, grad_output, false);
}

kiln_status kiln_backward_ex(kiln_tensor *root, kiln_tensor *grad_output, bool retain_graph) {
    if (!root) {
        /* the op that failed recorded why: return that status, as kiln_last_status() says */
        if (kiln_last_status() != KILN_STATUS_OK) return kiln_last_status();
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_backward: root is NULL");
    }
    if (!root->requires_grad && root->kept)
        return kiln__error(KILN_STATUS_STATE,
                           "kiln_backward: the tensor was moved out of its scope with kiln_scope_keep, which cuts it "
                           "from the tape (its graph dies with the inner scope); call kiln_backward before "
                           "kiln_scope_keep, or keep the loss's inputs instead");
    if (!root->requires_grad)
        return kiln__error(KILN_STATUS_STATE,
                           "kiln_backward: the tensor does not require grad: nothing on its path had "
                           "requires_grad set (call kiln_tensor_set_requires_grad on the parameters) or it was "
                           "computed in a no-grad region");
    char b1[160], b2[160];
    if (!grad_output && kiln_tensor_numel(root) != 1)
        return kiln__error(KILN_STATUS_SHAPE,
                           "kiln_backward: root %s is not a scalar; reduce it (kiln_sum_all / kiln_mean_all) or pass "
                           "grad_output of its shape",
                           kiln_tensor_describe(root, b1, sizeof b1));
    if (grad_output) {
        /* the status says which of shape, dtype and device differs */
        kiln_status bad = !kiln_device_equal(grad_output->device, root->device) ? KILN_STATUS_DEVICE
                          : grad_output->dtype != root->dtype                    ? KILN_STATUS_DTYPE
                          : !same_shape(grad_output, root)                       ? KILN_STATUS_SHAPE
                                                                                 : KILN_STATUS_OK;
        if (bad != KILN_STATUS_OK)
            return kiln__error(bad, "kiln_backward: grad_output %s does not match root %s; it needs the root's "
                               "shape, dtype and device",
                               kiln_tensor_describe(grad_output, b1, sizeof b1),
                               kiln_tensor_describe(root, b2, sizeof b2));
    }
    kiln_no_grad_begin();
    kiln_status st = KILN_STATUS_OK;
    kiln_tensor *g = grad_output ? grad_output : kiln_tensor_full(root->ndim, root->shape, 1.0, root->dtype, root->device);
    if (!g) {
        st = kiln_last_status();
        goto done;
    }
    if (!root->grad_fn) {
        st = kiln__accumulate_grad(root, g);
        goto done;
    }
    int count = 0;
    kiln_node **order = topo_order(root->grad_fn, &count);
    if (!order) {
        st = kiln_last_status();
        goto done;
    }
    for (int i = 0; i < count; i++) {
        if (order[i]->released) {
            const char *spent = order[i]->op->name;
            free(order);
            st = kiln__error(KILN_STATUS_STATE,
                             "kiln_backward: the graph through %s was already walked by an earlier backward, so its "
                             "gradients would be added twice; pass retain_graph = true to the first call "
                             "(kiln_backward_ex) to walk a graph more than once, or recompute the forward pass",
                             spent);
            goto done;
        }
        order[i]->grad_accum = NULL;
    }
    root->grad_fn->grad_accum = g;
    kiln_tensor *gin_small[8];
    for (int k = count - 1; k >= 0 && st == KILN_STATUS_OK; k--) {
        kiln_node *n = order[k];
        kiln_tensor *gout = n->grad_accum;
        n->grad_accum = NULL;
        if (!gout) continue;
        kiln_tensor **gin = n->nin <= 8 ? gin_small : calloc((size_t)n->nin, sizeof *gin);
        if (!gin) {
            st = kiln__error(KILN_STATUS_OOM, "kiln_backward: out of host memory");
            break;
        }
        for (int i = 0; i < n->nin; i++) gin[i] = NULL;
        n->op->backward(n, gout, gin);
        for (int i = 0; i < n->nin && st == KILN_STATUS_OK; i++) {
            if (!n->needs_grad[i]) continue;
            kiln_tensor *in = n->inputs[i], *gi = gin[i];
            if (!gi) {
                st = kiln_last_status() != KILN_STATUS_OK
                         ? kiln_last_status()
                         : kiln__error(KILN_STATUS_STATE, "kiln_backward: backward of %s gave no gradient for "
                                       "input %d", n->op->name, i);
                break;
            }
            if (!same_shape(gi, in)) {
                st = kiln__error(KILN_STATUS_STATE, "kiln_backward: backward of %s gave gradient %s for input %d "
                                 "of shape %s (a kiln bug; please report it)",
                                 n->op->name, kiln_tensor_describe(gi, b1, sizeof b1), i,
                                 kiln_tensor_describe(in, b2, sizeof b2));
                break;
            }
            if (in->grad_fn) {
                kiln_node *p = in->grad_fn;
                if (!p->grad_accum) {
                    p->grad_accum = gi;
                } else {
                    kiln_tensor *sum = kiln_add(p->grad_accum, gi);
                    if (!sum) st = kiln_last_status();
                    p->grad_accum = sum;
                }
            } else if (in->requires_grad) {
                st = kiln__accumulate_grad(in, gi);
            }
        }
        if (gin != gin_small) free(gin);
    }
    for (int i = 0; i < count; i++) {
        order[i]->grad_accum = NULL;
        if (!retain_graph && st == KILN_STATUS_OK) order[i]->released = true;
    }
    free(order);
done:
    kiln_no_grad_end();
    return st;
}

kiln_status kiln_tensor_set_requires_grad(kiln_tensor *t, bool on) {
    if (!t) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_set_requires_grad: tensor is NULL");
    if (on && !kiln__is_float(t->dtype))
        return kiln__error(KILN_STATUS_DTYPE, "kiln_tensor_set_requires_grad: a %s tensor cannot require grad; "
                           "only floating-point tensors have gradients", kiln_dtype_name(t->dtype));
    if (!on && t->grad_fn)
        return kiln__error(KILN_STATUS_STATE, "kiln_tensor_set_requires_grad: cannot turn off grad on a non-leaf "
                           "tensor; use kiln_tensor_detach()");
    t->requires_grad = on;
    return KILN_STATUS_OK;
}

bool kiln_tensor_requires_grad(const kiln_tensor *t) { return t && t->requires_grad; }
kiln_tensor *kiln_tensor_grad(const kiln_tensor *t) { return t ? t->grad : NULL; }

void kiln_tensor_zero_grad(kiln_tensor *t) {
    if (t && t->grad) kiln_tensor_fill(t->grad, 0.0);
}

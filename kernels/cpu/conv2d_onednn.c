/* CPU convolutions through oneDNN, the library PyTorch's CPU convolutions run on: f32
 * forward (+bias, +ReLU), backward-data and backward-weights primitives (kiln's
 * backward_input and backward_weight passes), built once per
 * geometry and kept in a bounded cache. The switch (KILN_ONEDNN, kiln_cpu_set_onednn)
 * exists in every build; without oneDNN the im2col path runs. */
#include "conv2d_onednn.h"
#include "layers.h"

#include <kiln/layers.h>
#include <stdlib.h>
#include <string.h>

static int g_enabled = -1; /* -1: not yet read from the environment */

bool kiln_cpu_onednn_enabled(void) {
    int v = __atomic_load_n(&g_enabled, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("KILN_ONEDNN");
        v = !(e && (!strcmp(e, "0") || !strcmp(e, "false") || !strcmp(e, "off")));
        __atomic_store_n(&g_enabled, v, __ATOMIC_RELAXED);
    }
    return v != 0;
}

void kiln_cpu_set_onednn(bool on) { __atomic_store_n(&g_enabled, on ? 1 : 0, __ATOMIC_RELAXED); }

#ifndef KILN_HAVE_ONEDNN

bool kiln_cpu_onednn_available(void) { return false; }
bool kiln_cpu_conv2d_onednn(const kiln_op_call *call, kiln_conv_pass pass, const kiln_conv_geometry *g,
                            bool relu, kiln_status *st) {
    return false;
}
kiln_onednn_counters kiln__onednn_counters(void) { return (kiln_onednn_counters){0}; }

#else

#include <dnnl.h>
#include <omp.h>
#include <pthread.h>

/* ---- engine, streams, counters ----------------------------------------------------- */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* engine, streams, cache */
static dnnl_engine_t g_engine;
static int g_engine_state; /* 0 untried, 1 ready, -1 failed */
/* Streams are not shared between threads at once: a free list, one per concurrent call. */
#define MAX_IDLE_STREAMS 8
static dnnl_stream_t g_streams[MAX_IDLE_STREAMS];
static int g_nstreams;
static int64_t g_runs, g_declined, g_created;

kiln_onednn_counters kiln__onednn_counters(void) {
    kiln_onednn_counters c;
    pthread_mutex_lock(&g_lock);
    c.runs = g_runs;
    c.declined = g_declined;
    c.primitives_created = g_created;
    pthread_mutex_unlock(&g_lock);
    return c;
}

/* Under g_lock. */
static bool engine_ready(void) {
    if (g_engine_state == 0) g_engine_state = dnnl_engine_create(&g_engine, dnnl_cpu, 0) == dnnl_success ? 1 : -1;
    return g_engine_state == 1;
}

bool kiln_cpu_onednn_available(void) {
    pthread_mutex_lock(&g_lock);
    bool ok = engine_ready();
    pthread_mutex_unlock(&g_lock);
    return ok;
}

static dnnl_stream_t stream_take(void) {
    dnnl_stream_t s = NULL;
    pthread_mutex_lock(&g_lock);
    if (g_nstreams > 0) s = g_streams[--g_nstreams];
    pthread_mutex_unlock(&g_lock);
    if (!s && dnnl_stream_create(&s, g_engine, dnnl_stream_default_flags) != dnnl_success) s = NULL;
    return s;
}

static void stream_give(dnnl_stream_t s) {
    pthread_mutex_lock(&g_lock);
    if (g_nstreams < MAX_IDLE_STREAMS) {
        g_streams[g_nstreams++] = s;
        s = NULL;
    }
    pthread_mutex_unlock(&g_lock);
    if (s) dnnl_stream_destroy(s);
}

/* ---- the primitive cache ------------------------------------------------------------------ */

/* The full geometry: the conv's shapes, strides, padding, dilation and groups (operands
 * are packed NCHW / OIHW, so the shapes fix the strides), the pass, bias, ReLU and the
 * thread count a primitive was built for. All int64 so the key has no padding bytes
 * and compares with memcmp. */
typedef struct {
    kiln_conv_geometry g;
    int64_t pass, bias, relu, threads;
} conv_key;

enum { OP_A, OP_B, OP_C }; /* the two inputs and the output, in conv2d.c's operand order */

typedef struct conv_entry {
    conv_key key;
    struct conv_entry *next; /* hash chain */
    uint64_t used;           /* lookup tick, for eviction */
    int refs;                /* calls running it now; evicted only at 0 */
    bool ok;                 /* false: oneDNN declined the geometry (kept, so it is asked once) */
    int64_t mb;              /* samples per primitive run (divides the batch) */
    dnnl_primitive_t prim;
    int arg[3];
    dnnl_memory_desc_t user[3];    /* kiln's plain layouts */
    dnnl_memory_desc_t inner[3];   /* the primitive's */
    dnnl_primitive_t reorder[3];   /* user -> inner for inputs, inner -> user for the output; NULL if equal */
    size_t inner_bytes[3];
    dnnl_memory_desc_t bias_md, scratch_md;
    size_t scratch_bytes;
} conv_entry;

/* A U-Net training step uses about 3 passes x 20 geometries; beyond this many keys the
 * least recently used idle entry goes. */
#define CACHE_MAX 256
#define NBUCKETS 512
static conv_entry *g_buckets[NBUCKETS];
static int g_count;
static uint64_t g_tick;

static uint64_t key_hash(const conv_key *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void entry_free(conv_entry *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    for (int i = 0; i < 3; i++)
        if (e->reorder[i]) dnnl_primitive_destroy(e->reorder[i]);
    free(e);
}

/* Under g_lock: drops the least recently used entry no call is running. */
static void evict_one(void) {
    conv_entry **victim = NULL;
    for (int b = 0; b < NBUCKETS; b++)
        for (conv_entry **p = &g_buckets[b]; *p; p = &(*p)->next)
            if ((*p)->refs == 0 && (!victim || (*p)->used < (*victim)->used)) victim = p;
    if (!victim) return;
    conv_entry *e = *victim;
    *victim = e->next;
    g_count--;
    entry_free(e);
}

/* A reorder between two layouts of one tensor, or NULL when they are the same. */
static dnnl_status_t make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to, dnnl_primitive_t *r) {
    *r = NULL;
    if (dnnl_memory_desc_equal(from, to)) return dnnl_success;
    dnnl_primitive_desc_t pd;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, from, g_engine, to, g_engine, NULL);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(r, pd);
    dnnl_primitive_desc_destroy(pd);
    return s;
}

#define TRY(x)                                                                                                 \
    do {                                                                                                       \
        if ((s = (x)) != dnnl_success) goto done;                                                              \
    } while (0)

/* The batch runs in chunks of samples whose blocked copies stay within 4 MiB. Copies
 * of a whole batch are as big as its activations: on the conv3x3 case (16 MiB
 * activations) they put the second training step's peak (which also holds the first
 * step's gradients) one activation above the first's, a new pool segment after warm-up.
 * Chunks of one sample (1 MiB) cost the U-Net-16 step about 25% more CPU time than
 * whole-batch runs; at 4 MiB its batch still runs whole. The chunk divides the batch,
 * so one primitive serves every chunk. */
static int64_t chunk_samples(const kiln_conv_geometry *g) {
    const int64_t limit = 4 << 20;
    int64_t cin = (g->cin + 15) / 16 * 16, cout = (g->cout + 15) / 16 * 16; /* blocked layouts pad channels */
    int64_t a = cin * g->h * g->w, b = cout * g->ho * g->wo;
    int64_t per = (a > b ? a : b) * (int64_t)sizeof(float);
    int64_t mb = per > 0 ? limit / per : g->n;
    if (mb >= g->n) return g->n;
    if (mb < 1) return 1;
    while (g->n % mb) mb--;
    return mb;
}

/* Fills e's primitive, layouts and reorders; any status but success leaves e->ok false. */
static dnnl_status_t build(conv_entry *e) {
    const conv_key *k = &e->key;
    const kiln_conv_geometry *g = &k->g;
    dnnl_memory_desc_t src, wei, dst, bias, src_any, wei_any, dst_any;
    e->mb = chunk_samples(g);
    dnnl_dims_t sd = {e->mb, g->cin, g->h, g->w}, dd = {e->mb, g->cout, g->ho, g->wo}, bd = {g->cout};
    dnnl_dims_t wd5 = {g->groups, g->cout_g, g->cin_g, g->kh, g->kw};
    dnnl_dims_t wd4 = {g->cout, g->cin, g->kh, g->kw};
    bool grouped = g->groups > 1;
    /* oneDNN counts dilation from 0; its right padding is what makes the output size
     * exact (kiln's attrs carry only the top/left side), never below 0 */
    dnnl_dims_t strides = {g->sh, g->sw}, dil = {g->dh - 1, g->dw - 1}, pl = {g->ph, g->pw};
    dnnl_dims_t pr = {g->ph_end > 0 ? g->ph_end : 0, g->pw_end > 0 ? g->pw_end : 0};
    dnnl_primitive_desc_t hint = NULL, pd = NULL;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post = NULL;
    dnnl_status_t s;
    TRY(dnnl_memory_desc_init_by_tag(&src, 4, sd, dnnl_f32, dnnl_nchw));
    TRY(dnnl_memory_desc_init_by_tag(&dst, 4, dd, dnnl_f32, dnnl_nchw));
    TRY(dnnl_memory_desc_init_by_tag(&wei, grouped ? 5 : 4, grouped ? wd5 : wd4, dnnl_f32,
                                     grouped ? dnnl_goihw : dnnl_oihw));
    TRY(dnnl_memory_desc_init_by_tag(&bias, 1, bd, dnnl_f32, dnnl_x));
    /* oneDNN picks the layouts (blocked, nChw16c and friends; reorders from and to
     * kiln's): handed kiln's plain NCHW/OIHW it runs its gemm-based convolution, which
     * made the U-Net-16 step and conv3x3 about 2x slower (docs/benchmarks.md) */
    TRY(dnnl_memory_desc_init_by_tag(&src_any, 4, sd, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&dst_any, 4, dd, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_memory_desc_init_by_tag(&wei_any, grouped ? 5 : 4, grouped ? wd5 : wd4, dnnl_f32, dnnl_format_tag_any));
    TRY(dnnl_primitive_attr_create(&attr));
    /* the scratchpad comes from kiln's pool with each call */
    TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (k->relu) {
        TRY(dnnl_post_ops_create(&post));
        TRY(dnnl_post_ops_append_eltwise(post, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
        TRY(dnnl_primitive_attr_set_post_ops(attr, post));
    }
    dnnl_convolution_desc_t fwd, bwd;
    bool with_bias = k->bias && k->pass == KILN_CONV_FORWARD;
    TRY(dnnl_dilated_convolution_forward_desc_init(&fwd, dnnl_forward_training, dnnl_convolution_direct, &src_any,
                                                   &wei_any, with_bias ? &bias : NULL, &dst_any, strides, dil, pl,
                                                   pr));
    if (k->pass == KILN_CONV_FORWARD) {
        TRY(dnnl_primitive_desc_create(&pd, &fwd, attr, g_engine, NULL));
        e->arg[OP_A] = DNNL_ARG_SRC, e->arg[OP_B] = DNNL_ARG_WEIGHTS, e->arg[OP_C] = DNNL_ARG_DST;
        e->user[OP_A] = src, e->user[OP_B] = wei, e->user[OP_C] = dst;
        e->inner[OP_A] = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        e->inner[OP_B] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        e->inner[OP_C] = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    } else {
        /* the backward passes take a forward primitive descriptor as their hint */
        TRY(dnnl_primitive_desc_create(&hint, &fwd, NULL, g_engine, NULL));
        if (k->pass == KILN_CONV_BACKWARD_INPUT) {
            TRY(dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &src_any, &wei_any,
                                                                 &dst_any, strides, dil, pl, pr));
            TRY(dnnl_primitive_desc_create(&pd, &bwd, attr, g_engine, hint));
            e->arg[OP_A] = DNNL_ARG_DIFF_DST, e->arg[OP_B] = DNNL_ARG_WEIGHTS, e->arg[OP_C] = DNNL_ARG_DIFF_SRC;
            e->user[OP_A] = dst, e->user[OP_B] = wei, e->user[OP_C] = src;
            e->inner[OP_A] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
            e->inner[OP_B] = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            e->inner[OP_C] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0);
        } else {
            TRY(dnnl_dilated_convolution_backward_weights_desc_init(&bwd, dnnl_convolution_direct, &src_any, &wei_any,
                                                                    NULL, &dst_any, strides, dil, pl, pr));
            TRY(dnnl_primitive_desc_create(&pd, &bwd, attr, g_engine, hint));
            e->arg[OP_A] = DNNL_ARG_DIFF_DST, e->arg[OP_B] = DNNL_ARG_SRC, e->arg[OP_C] = DNNL_ARG_DIFF_WEIGHTS;
            e->user[OP_A] = dst, e->user[OP_B] = src, e->user[OP_C] = wei;
            e->inner[OP_A] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0);
            e->inner[OP_B] = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
            e->inner[OP_C] = *dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0);
        }
    }
    e->bias_md = bias;
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (sp) e->scratch_md = *sp;
    e->scratch_bytes = sp ? dnnl_memory_desc_get_size(sp) : 0;
    TRY(dnnl_primitive_create(&e->prim, pd));
    TRY(make_reorder(&e->user[OP_A], &e->inner[OP_A], &e->reorder[OP_A]));
    TRY(make_reorder(&e->user[OP_B], &e->inner[OP_B], &e->reorder[OP_B]));
    TRY(make_reorder(&e->inner[OP_C], &e->user[OP_C], &e->reorder[OP_C]));
    for (int i = 0; i < 3; i++) e->inner_bytes[i] = dnnl_memory_desc_get_size(&e->inner[i]);
    e->ok = true;
    g_created++;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (hint) dnnl_primitive_desc_destroy(hint);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (post) dnnl_post_ops_destroy(post);
    if (!e->ok) {
        if (e->prim) dnnl_primitive_destroy(e->prim);
        for (int i = 0; i < 3; i++)
            if (e->reorder[i]) dnnl_primitive_destroy(e->reorder[i]);
        e->prim = NULL;
        memset(e->reorder, 0, sizeof e->reorder);
    }
    return s;
}

/* The entry of key (built on first use), with a reference the caller gives back with
 * release(); NULL when oneDNN declines it or no memory is left for the entry. */
static conv_entry *acquire(const conv_key *key) {
    uint64_t h = key_hash(key) % NBUCKETS;
    pthread_mutex_lock(&g_lock);
    conv_entry *e = g_buckets[h];
    while (e && memcmp(&e->key, key, sizeof *key) != 0) e = e->next;
    if (!e && (e = calloc(1, sizeof *e))) {
        /* built under the lock: a key is built once, and building is rare (first step) */
        e->key = *key;
        build(e);
        if (g_count >= CACHE_MAX) evict_one();
        e->next = g_buckets[h];
        g_buckets[h] = e;
        g_count++;
    }
    if (e) {
        e->used = ++g_tick;
        if (e->ok) e->refs++;
        else g_declined++;
    }
    pthread_mutex_unlock(&g_lock);
    return e && e->ok ? e : NULL;
}

static void release(conv_entry *e) {
    pthread_mutex_lock(&g_lock);
    e->refs--;
    g_runs++;
    pthread_mutex_unlock(&g_lock);
}

/* ---- running a pass ---------------------------------------------------------------------- */

/* A pool buffer of at least bytes (NULL for 0), so steady-state steps allocate nothing new. */
static kiln_status scratch_tensor(const char *op, size_t bytes, kiln_device dev, kiln_tensor **t) {
    *t = NULL;
    if (!bytes) return KILN_STATUS_OK;
    int64_t n = (int64_t)((bytes + sizeof(float) - 1) / sizeof(float));
    if (!(*t = kiln__new(1, &n, KILN_F32, dev)))
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory for a %zu-byte oneDNN buffer (a smaller batch "
                           "or image needs less)", op, bytes);
    return KILN_STATUS_OK;
}

static kiln_status dnnl_failed(const char *op, const char *what, dnnl_status_t s) {
    return kiln__error(KILN_STATUS_BACKEND, "%s: oneDNN %s failed (dnnl status %d); set KILN_ONEDNN=0 to run the "
                       "im2col path instead", op, what, (int)s);
}

/* Per-channel bias after a backward_input pass (conv_transpose2d's bias). */
static void add_bias(float *y, const float *b, int64_t n, int64_t c, int64_t l) {
#pragma omp parallel for schedule(static) if (n * c * l > 65536)
    for (int64_t p = 0; p < n * c; p++) {
        float v = b[p % c], *row = y + p * l;
        for (int64_t i = 0; i < l; i++) row[i] += v;
    }
}

/* dw += t over n floats (the backward_weight chunks after the first) */
static void accumulate(float *dw, const float *t, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) dw[i] += t[i];
}

static kiln_status execute(conv_entry *e, const kiln_op_call *call, kiln_tensor *const *ops, kiln_tensor *bias) {
    const char *op = call->op->name;
    const kiln_conv_geometry *g = &e->key.g;
    const kiln_conv_pass pass = (kiln_conv_pass)e->key.pass;
    kiln_device dev = call->out->device;
    dnnl_memory_t user[3] = {0}, inner[3] = {0}, part = NULL, mbias = NULL, mscratch = NULL;
    kiln_tensor *tmp[3] = {0}, *tpart = NULL, *scratch = NULL;
    kiln_status st = KILN_STATUS_OK;
    dnnl_status_t s = dnnl_success;
    const char *what = "memory setup";
    /* floats per sample of each operand; 0 for the weights, which every chunk shares */
    const int64_t xs = g->cin * g->h * g->w, ys = g->cout * g->ho * g->wo;
    int64_t per[3] = {ys, 0, xs};
    if (pass == KILN_CONV_FORWARD) per[OP_A] = xs, per[OP_C] = ys;
    if (pass == KILN_CONV_BACKWARD_WEIGHT) per[OP_B] = xs, per[OP_C] = 0;
    const int64_t chunks = g->n / e->mb;
    const bool summed = pass == KILN_CONV_BACKWARD_WEIGHT && chunks > 1;
    dnnl_stream_t stream = stream_take();
    if (!stream) return dnnl_failed(op, "stream creation", dnnl_out_of_memory);
    for (int i = 0; i < 3 && st == KILN_STATUS_OK && s == dnnl_success; i++) {
        s = dnnl_memory_create(&user[i], &e->user[i], g_engine, kiln__ptr(ops[i]));
        if (s == dnnl_success && e->reorder[i]) {
            st = scratch_tensor(op, e->inner_bytes[i], dev, &tmp[i]);
            if (st == KILN_STATUS_OK) s = dnnl_memory_create(&inner[i], &e->inner[i], g_engine, kiln__ptr(tmp[i]));
        }
    }
    if (st == KILN_STATUS_OK && s == dnnl_success && summed) {
        st = scratch_tensor(op, e->inner_bytes[OP_C], dev, &tpart);
        if (st == KILN_STATUS_OK) s = dnnl_memory_create(&part, &e->inner[OP_C], g_engine, kiln__ptr(tpart));
    }
    if (st == KILN_STATUS_OK && s == dnnl_success && e->scratch_bytes) {
        st = scratch_tensor(op, e->scratch_bytes, dev, &scratch);
        if (st == KILN_STATUS_OK) s = dnnl_memory_create(&mscratch, &e->scratch_md, g_engine, kiln__ptr(scratch));
    }
    if (st == KILN_STATUS_OK && s == dnnl_success && bias && pass == KILN_CONV_FORWARD)
        s = dnnl_memory_create(&mbias, &e->bias_md, g_engine, kiln__ptr(bias));
    for (int64_t c = 0; c < chunks && st == KILN_STATUS_OK && s == dnnl_success; c++) {
        what = "reorder";
        for (int i = 0; i < 3 && s == dnnl_success; i++)
            if (per[i] && c > 0)
                s = dnnl_memory_set_data_handle(user[i], (float *)kiln__ptr(ops[i]) + c * e->mb * per[i]);
        for (int i = OP_A; i <= OP_B && s == dnnl_success; i++)
            if (e->reorder[i] && (per[i] || c == 0)) {
                dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, user[i]}, {DNNL_ARG_TO, inner[i]}};
                s = dnnl_primitive_execute(e->reorder[i], stream, 2, a);
            }
        if (s == dnnl_success) {
            what = kiln_conv_pass_name(pass);
            dnnl_exec_arg_t a[5];
            int na = 0;
            for (int i = 0; i < 3; i++) a[na++] = (dnnl_exec_arg_t){e->arg[i], inner[i] ? inner[i] : user[i]};
            if (summed && c > 0) a[OP_C].memory = part;
            if (mbias) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mbias};
            if (mscratch) a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, mscratch};
            s = dnnl_primitive_execute(e->prim, stream, na, a);
        }
        if (s == dnnl_success && summed && c > 0) {
            s = dnnl_stream_wait(stream);
            void *acc = kiln__ptr(tmp[OP_C] ? tmp[OP_C] : ops[OP_C]);
            if (s == dnnl_success)
                accumulate(acc, (const float *)kiln__ptr(tpart), (int64_t)(e->inner_bytes[OP_C] / sizeof(float)));
        }
        if (s == dnnl_success && e->reorder[OP_C] && (per[OP_C] || c == chunks - 1)) {
            what = "reorder";
            dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, inner[OP_C]}, {DNNL_ARG_TO, user[OP_C]}};
            s = dnnl_primitive_execute(e->reorder[OP_C], stream, 2, a);
        }
    }
    if (st == KILN_STATUS_OK && s == dnnl_success) s = dnnl_stream_wait(stream);
    if (st == KILN_STATUS_OK && s != dnnl_success) st = dnnl_failed(op, what, s);
    if (st == KILN_STATUS_OK && bias && pass == KILN_CONV_BACKWARD_INPUT)
        add_bias((float *)kiln__ptr(ops[OP_C]), (const float *)kiln__ptr(bias), g->n, g->cin, g->h * g->w);
    for (int i = 0; i < 3; i++) {
        if (user[i]) dnnl_memory_destroy(user[i]);
        if (inner[i]) dnnl_memory_destroy(inner[i]);
        if (tmp[i]) kiln_tensor_free(tmp[i]);
    }
    if (part) dnnl_memory_destroy(part);
    if (tpart) kiln_tensor_free(tpart);
    if (mbias) dnnl_memory_destroy(mbias);
    if (mscratch) dnnl_memory_destroy(mscratch);
    if (scratch) kiln_tensor_free(scratch);
    stream_give(stream);
    return st;
}

bool kiln_cpu_conv2d_onednn(const kiln_op_call *call, kiln_conv_pass pass, const kiln_conv_geometry *g,
                            bool relu, kiln_status *st) {
    if (call->out->dtype != KILN_F32 || !kiln_cpu_onednn_enabled()) return false;
    /* empty tensors: nothing oneDNN needs to do that the im2col path does not do as well */
    if (g->n <= 0 || g->cin <= 0 || g->cout <= 0 || g->h <= 0 || g->w <= 0 || g->ho <= 0 || g->wo <= 0) return false;
    if (!kiln_cpu_onednn_available()) return false;
    conv_key key;
    memset(&key, 0, sizeof key);
    key.g = *g;
    key.pass = pass;
    key.bias = call->nin > 2 && call->in[2] != NULL;
    key.relu = relu;
    key.threads = omp_get_max_threads();
    conv_entry *e = acquire(&key);
    if (!e) return false;
    kiln_tensor *ops[3] = {kiln_cpu_dense(call->in[0]), NULL, call->out};
    ops[OP_B] = ops[OP_A] ? kiln_cpu_dense(call->in[1]) : NULL;
    kiln_tensor *bias = ops[OP_B] && key.bias ? kiln_cpu_dense(call->in[2]) : NULL;
    if (!ops[OP_A] || !ops[OP_B] || (key.bias && !bias)) *st = kiln_last_status(); /* a packing copy failed */
    else *st = execute(e, call, ops, bias);
    if (bias && bias != call->in[2]) kiln_tensor_free(bias);
    if (ops[OP_B] && ops[OP_B] != call->in[1]) kiln_tensor_free(ops[OP_B]);
    if (ops[OP_A] && ops[OP_A] != call->in[0]) kiln_tensor_free(ops[OP_A]);
    release(e);
    return true;
}

#endif

/* safetensors checkpoints: the format of the Python `safetensors` package (u64
 * little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}
 * with an optional "__metadata__" string map, then the tensors' raw bytes packed
 * back to back). Writing is atomic (temporary file, fsync, rename); reading
 * validates the whole table before any tensor is touched. The JSON itself is
 * jansson's (strict RFC 8259, UTF-8 checked, duplicate keys rejected). */
#include "internal.h"
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kiln's safetensors I/O assumes a little-endian host, as the format's data is little-endian"
#endif

/* The safetensors package refuses headers above 100 MB; so do we. */
#define MAX_HEADER_LEN 100000000ull
/* A safetensors header nests three deep; jansson allows 2048, far more than any
 * header needs, so deeper text is refused as the sign of a damaged file. */
#define MAX_DEPTH 64

typedef struct {
    const char *name;
    size_t size;
    int kiln; /* kiln_dtype or -1 */
} st_dtype;

static const st_dtype g_dtypes[] = {
    {"F64", 8, KILN_F64}, {"F32", 4, KILN_F32}, {"F16", 2, KILN_F16}, {"BF16", 2, KILN_BF16},
    {"I64", 8, KILN_I64}, {"I32", 4, KILN_I32}, {"U8", 1, KILN_U8},   {"I16", 2, -1},
    {"U16", 2, -1},       {"U32", 4, -1},       {"U64", 8, -1},       {"I8", 1, -1},
    {"BOOL", 1, -1},      {"F8_E4M3", 1, -1},   {"F8_E5M2", 1, -1},
};
#define N_DTYPES ((int)(sizeof g_dtypes / sizeof g_dtypes[0]))

static const st_dtype *dtype_by_name(const char *s) {
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(g_dtypes[i].name, s)) return &g_dtypes[i];
    return NULL;
}

static const st_dtype *dtype_of(kiln_dtype dt) {
    for (int i = 0; i < N_DTYPES; i++)
        if (g_dtypes[i].kiln == (int)dt) return &g_dtypes[i];
    return NULL;
}

struct kiln_safetensors {
    FILE *f;
    char *path;
    uint64_t data_start, data_len;
    json_t *header;
    int n;
    kiln_safetensors_entry *entries; /* sorted by data offset; strings point into header */
    int nmeta;
    kiln_metadata_entry *meta;
};

/* ---- a growable message, for errors that list many names ---------------------------- */

typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->len + (size_t)k + 1 > b->cap) {
        size_t nc = (b->len + (size_t)k + 1) * 2;
        char *s = realloc(b->s, nc);
        if (!s) return;
        b->s = s;
        b->cap = nc;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)k;
}

/* ---- reading --------------------------------------------------------------------------- */

void kiln_safetensors_close(kiln_safetensors *f) {
    if (!f) return;
    if (f->f) fclose(f->f);
    free(f->path);
    json_decref(f->header);
    free(f->entries);
    free(f->meta);
    free(f);
}

static int cmp_entry(const void *a, const void *b) {
    const kiln_safetensors_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* jansson keeps integers as json_int_t (int64): literals up to 2^63-1 are exact,
 * larger ones fail the parse, which no valid size or offset needs. */
static bool as_uint(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* True, with the byte, when text[0..n) opens more than MAX_DEPTH brackets at once.
 * Run before jansson so a too-deep header is refused where it gets too deep, even
 * when it would also break later; strings are skipped so brackets in names don't count. */
static bool too_deep(const char *text, size_t n, size_t *at) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > MAX_DEPTH) return *at = i, true;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return false;
}

/* jansson's message, reworded where it would hide the cause or name jansson's own flags. */
static void json_error_text(const json_error_t *e, char *buf, size_t n) {
    switch (json_error_code(e)) {
    case json_error_invalid_utf8: snprintf(buf, n, "not valid UTF-8 (%s) at byte %d", e->text, e->position); break;
    case json_error_null_character:
        snprintf(buf, n, "a string contains \\u0000, which names cannot hold, at byte %d", e->position);
        break;
    case json_error_numeric_overflow:
        snprintf(buf, n, "%s at byte %d: sizes and offsets must be integers below 2^63", e->text, e->position);
        break;
    default: snprintf(buf, n, "%s at byte %d", e->text, e->position); break;
    }
}

static kiln_safetensors *open_fail(kiln_safetensors *f, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kiln_safetensors *open_fail(kiln_safetensors *f, kiln_status s, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kiln__error(s, "safetensors '%s': %s", f->path ? f->path : "?", msg);
    kiln_safetensors_close(f);
    return NULL;
}

/* Checks one table entry and fills e. Returns an error text or NULL.
 * The shape must keep the bound every kiln tensor keeps (internal.h): its sizes, an
 * empty axis counted as 1, times the element size stay below 2^63 bytes, so that
 * the entry's numel, bytes and strides are representable. The safetensors package
 * checks less of an empty tensor ([0, 2^62, 2] passes its checked product), but
 * kiln could not make that tensor, so the file is refused here, by name. */
static const char *parse_entry(const char *name, const json_t *v, uint64_t data_len, kiln_safetensors_entry *e,
                               char *why, size_t n) {
    e->name = name;
    if (!json_is_object(v)) return "is not an object";
    const json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
                 *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt)) return "has no \"dtype\" string";
    const st_dtype *d = dtype_by_name(json_string_value(dt));
    if (!d) {
        snprintf(why, n, "has unknown dtype \"%.64s\" (safetensors dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U64 "
                 "U32 U16 U8 BOOL F8_E4M3 F8_E5M2)", json_string_value(dt));
        return why;
    }
    e->dtype_name = d->name;
    e->dtype = d->kiln;
    if (!json_is_array(sh)) return "has no \"shape\" array";
    if (json_array_size(sh) > KILN_MAX_DIMS) {
        snprintf(why, n, "has %zu dimensions; kiln tensors have at most %d", json_array_size(sh), KILN_MAX_DIMS);
        return why;
    }
    e->ndim = (int)json_array_size(sh);
    for (int k = 0; k < e->ndim; k++) {
        const json_t *s = json_array_get(sh, (size_t)k);
        if (!json_is_integer(s) || json_integer_value(s) < 0) {
            char val[32];
            if (json_is_integer(s)) snprintf(val, sizeof val, "%lld", (long long)json_integer_value(s));
            else snprintf(val, sizeof val, "%s", json_is_real(s) ? "a fraction" : "not a number");
            snprintf(why, n, "has shape entry %s at axis %d, which is not a size (an integer >= 0)", val, k);
            return why;
        }
        e->shape[k] = (int64_t)json_integer_value(s);
    }
    int64_t extent = (int64_t)d->size, numel = 1;
    char sb[256];
    for (int k = 0; k < e->ndim; k++) {
        if (!kiln__mul_i64(extent, e->shape[k] > 1 ? e->shape[k] : 1, &extent)) {
            snprintf(why, n, "has shape %s%s, which kiln cannot hold: its sizes (an empty axis counted as 1) times "
                     "the %zu-byte element size reach 2^63 bytes", d->name,
                     kiln__shape_str(e->ndim, e->shape, sb, sizeof sb), d->size);
            return why;
        }
        kiln__mul_i64(numel, e->shape[k], &numel); /* <= extent: cannot overflow */
    }
    uint64_t bytes = (uint64_t)numel * d->size; /* <= extent too */
    if (!json_is_array(off) || json_array_size(off) != 2 || !as_uint(json_array_get(off, 0), &e->begin) ||
        !as_uint(json_array_get(off, 1), &e->end))
        return "has no \"data_offsets\" pair of non-negative integers";
    if (e->end < e->begin) return "has data_offsets that end before they begin";
    if (e->end > data_len) {
        snprintf(why, n, "has data_offsets [%llu, %llu] past the end of the data area (%llu bytes)",
                 (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)data_len);
        return why;
    }
    if (e->end - e->begin != bytes) {
        snprintf(why, n, "is %s%s (%llu bytes) but its data_offsets [%llu, %llu] span %llu bytes", d->name,
                 kiln__shape_str(e->ndim, e->shape, sb, sizeof sb), (unsigned long long)bytes,
                 (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)(e->end - e->begin));
        return why;
    }
    return NULL;
}

kiln_safetensors *kiln_safetensors_open(const char *path) {
    if (!path) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_safetensors_open: path is NULL");
        return NULL;
    }
    kiln_safetensors *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        kiln__error(KILN_STATUS_OOM, "kiln_safetensors_open: out of host memory");
        return NULL;
    }
    f->f = fopen(path, "rb");
    if (!f->f) return open_fail(f, KILN_STATUS_IO, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fileno(f->f), &st) != 0) return open_fail(f, KILN_STATUS_IO, "cannot stat: %s", strerror(errno));
    if (!S_ISREG(st.st_mode)) return open_fail(f, KILN_STATUS_IO, "not a regular file");
    uint64_t size = (uint64_t)st.st_size;
    unsigned char lenb[8];
    if (size < 8)
        return open_fail(f, KILN_STATUS_FORMAT, "the file is %llu bytes, too short for the 8-byte header length "
                         "(truncated?)", (unsigned long long)size);
    if (fread(lenb, 1, 8, f->f) != 8) return open_fail(f, KILN_STATUS_IO, "cannot read the header length");
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = hl << 8 | lenb[k];
    if (hl < 2 || hl > MAX_HEADER_LEN)
        return open_fail(f, KILN_STATUS_FORMAT, "header length %llu is not sane (2..%llu bytes); not a safetensors "
                         "file?", (unsigned long long)hl, MAX_HEADER_LEN);
    if (hl > size - 8)
        return open_fail(f, KILN_STATUS_FORMAT, "header length %llu runs past the end of the %llu-byte file "
                         "(truncated?)", (unsigned long long)hl, (unsigned long long)size);
    f->data_start = 8 + hl;
    f->data_len = size - f->data_start;
    char *text = malloc(hl);
    if (!text) return open_fail(f, KILN_STATUS_OOM, "out of host memory for a %llu-byte header", (unsigned long long)hl);
    if (fread(text, 1, hl, f->f) != hl) {
        free(text);
        return open_fail(f, KILN_STATUS_IO, "cannot read the header");
    }
    if (text[0] != '{') {
        free(text);
        return open_fail(f, KILN_STATUS_FORMAT, "the header does not start with '{'");
    }
    size_t deep_at;
    if (too_deep(text, hl, &deep_at)) {
        free(text);
        return open_fail(f, KILN_STATUS_FORMAT, "the JSON header is malformed: nesting too deep (more than %d "
                         "levels) at byte %zu", MAX_DEPTH, deep_at);
    }
    json_error_t jerr;
    f->header = json_loadb(text, hl, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!f->header) {
        if (json_error_code(&jerr) == json_error_out_of_memory)
            return open_fail(f, KILN_STATUS_OOM, "out of host memory parsing a %llu-byte header",
                             (unsigned long long)hl);
        char why[300];
        json_error_text(&jerr, why, sizeof why);
        return open_fail(f, KILN_STATUS_FORMAT, "the JSON header is malformed: %s", why);
    }
    json_t *h = f->header;
    f->entries = calloc(json_object_size(h) + 1, sizeof *f->entries);
    if (!f->entries) return open_fail(f, KILN_STATUS_OOM, "out of host memory");
    /* jansson iterates objects in file order, so the first bad entry in the file is the one reported */
    const char *name;
    json_t *v;
    json_object_foreach(h, name, v) {
        if (!strcmp(name, "__metadata__")) {
            if (!json_is_object(v)) return open_fail(f, KILN_STATUS_FORMAT, "__metadata__ is not an object");
            f->meta = calloc(json_object_size(v) + 1, sizeof *f->meta);
            if (!f->meta) return open_fail(f, KILN_STATUS_OOM, "out of host memory");
            const char *key;
            json_t *val;
            json_object_foreach(v, key, val) {
                if (!json_is_string(val))
                    return open_fail(f, KILN_STATUS_FORMAT, "__metadata__ value of \"%.64s\" is not a string", key);
                f->meta[f->nmeta++] = (kiln_metadata_entry){key, json_string_value(val)};
            }
            continue;
        }
        char why[600];
        const char *bad = parse_entry(name, v, f->data_len, &f->entries[f->n], why, sizeof why);
        if (bad) return open_fail(f, KILN_STATUS_FORMAT, "tensor \"%.128s\" %s", name, bad);
        f->n++;
    }
    /* The data area must be exactly the tensors, back to back. */
    qsort(f->entries, (size_t)f->n, sizeof *f->entries, cmp_entry);
    uint64_t at = 0;
    for (int k = 0; k < f->n; k++) {
        kiln_safetensors_entry *e = &f->entries[k];
        if (e->begin < at)
            return open_fail(f, KILN_STATUS_FORMAT, "tensor \"%.128s\" [%llu, %llu] overlaps tensor \"%.128s\" "
                             "(which ends at %llu)", e->name, (unsigned long long)e->begin,
                             (unsigned long long)e->end, f->entries[k - 1].name, (unsigned long long)at);
        if (e->begin > at)
            return open_fail(f, KILN_STATUS_FORMAT, "bytes [%llu, %llu) of the data area belong to no tensor (gap "
                             "before \"%.128s\")", (unsigned long long)at, (unsigned long long)e->begin, e->name);
        at = e->end;
    }
    if (at != f->data_len)
        return open_fail(f, KILN_STATUS_FORMAT, "the tensors cover %llu bytes but the data area has %llu (trailing "
                         "bytes or a wrong header length)", (unsigned long long)at, (unsigned long long)f->data_len);
    return f;
}

int kiln_safetensors_count(const kiln_safetensors *f) { return f ? f->n : 0; }

const kiln_safetensors_entry *kiln_safetensors_entry_at(const kiln_safetensors *f, int i) {
    return f && i >= 0 && i < f->n ? &f->entries[i] : NULL;
}

const kiln_safetensors_entry *kiln_safetensors_find(const kiln_safetensors *f, const char *name) {
    if (!f || !name) return NULL;
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->entries[i].name, name)) return &f->entries[i];
    return NULL;
}

int kiln_safetensors_metadata(const kiln_safetensors *f, const kiln_metadata_entry **entries) {
    if (entries) *entries = f ? f->meta : NULL;
    return f ? f->nmeta : 0;
}

const char *kiln_safetensors_metadata_get(const kiln_safetensors *f, const char *key) {
    if (!f || !key) return NULL;
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

static kiln_status read_bytes(kiln_safetensors *f, const kiln_safetensors_entry *e, void *dst) {
    uint64_t n = e->end - e->begin;
    if (!n) return KILN_STATUS_OK;
    if (fseeko(f->f, (off_t)(f->data_start + e->begin), SEEK_SET) != 0 || fread(dst, 1, n, f->f) != n)
        return kiln__error(KILN_STATUS_IO, "safetensors '%s': cannot read tensor \"%.128s\" (file changed while "
                           "open?)", f->path, e->name);
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_safetensors_read(kiln_safetensors *f, const char *name) {
    if (!f || !name) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_safetensors_read: file or name is NULL");
        return NULL;
    }
    const kiln_safetensors_entry *e = kiln_safetensors_find(f, name);
    if (!e) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "safetensors '%s': no tensor named \"%.128s\"", f->path, name);
        return NULL;
    }
    if (e->dtype < 0) {
        kiln__error(KILN_STATUS_DTYPE, "safetensors '%s': tensor \"%.128s\" is %s, which kiln has no tensors of",
                    f->path, name, e->dtype_name);
        return NULL;
    }
    kiln_tensor *t = kiln__new(e->ndim, e->shape, (kiln_dtype)e->dtype, KILN_CPU);
    if (t && read_bytes(f, e, kiln__ptr(t)) != KILN_STATUS_OK) {
        kiln_tensor_free(t);
        return NULL;
    }
    return t;
}

static bool same_geometry(const kiln_safetensors_entry *e, const kiln_tensor *t) {
    if (e->dtype != (int)t->dtype || e->ndim != t->ndim) return false;
    for (int k = 0; k < e->ndim; k++)
        if (e->shape[k] != t->shape[k]) return false;
    return true;
}

static bool same_shape_dtype(const kiln_tensor *a, const kiln_tensor *b) {
    if (a->dtype != b->dtype || a->ndim != b->ndim) return false;
    for (int k = 0; k < a->ndim; k++)
        if (a->shape[k] != b->shape[k]) return false;
    return true;
}

static kiln_status check_into(const char *op, const kiln_named_tensor *into, int n) {
    if (n < 0 || (n > 0 && !into)) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: no tensors given", op);
    for (int i = 0; i < n; i++) {
        if (!into[i].name || !into[i].tensor)
            return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: entry %d has a NULL %s", op, i,
                               into[i].name ? "tensor (an earlier call failed?)" : "name");
        for (int j = 0; j < i; j++)
            if (!strcmp(into[i].name, into[j].name))
                return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: name \"%.128s\" is given twice", op,
                                   into[i].name);
    }
    return KILN_STATUS_OK;
}

/* Matches into[] against the table (match[i]: the entry, or NULL) and reports every
 * mismatched name, and with strict every missing and unexpected one, in one error. */
static kiln_status match_table(const char *op, kiln_safetensors *f, const kiln_named_tensor *into, int n, bool strict,
                               const kiln_safetensors_entry **match) {
    bool *used = calloc((size_t)f->n + 1, sizeof *used);
    if (!used) return kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
    strbuf missing = {0}, unexpected = {0}, mismatched = {0};
    int n_missing = 0, n_unexpected = 0, n_mismatched = 0;
    for (int i = 0; i < n; i++) {
        match[i] = NULL;
        for (int k = 0; k < f->n; k++)
            if (!strcmp(f->entries[k].name, into[i].name)) {
                match[i] = &f->entries[k];
                used[k] = true;
                break;
            }
        const kiln_safetensors_entry *e = match[i];
        if (!e) {
            sb_printf(&missing, "%s\"%s\"", n_missing++ ? ", " : "", into[i].name);
        } else if (!same_geometry(e, into[i].tensor)) {
            char s1[256], s2[256];
            sb_printf(&mismatched, "%s\"%s\" (file %s%s, tensor %s)", n_mismatched++ ? ", " : "", into[i].name,
                      e->dtype_name, kiln__shape_str(e->ndim, e->shape, s1, sizeof s1),
                      kiln_tensor_describe(into[i].tensor, s2, sizeof s2));
        }
    }
    for (int k = 0; k < f->n; k++)
        if (!used[k]) sb_printf(&unexpected, "%s\"%s\"", n_unexpected++ ? ", " : "", f->entries[k].name);
    kiln_status st = KILN_STATUS_OK;
    if (n_mismatched || (strict && (n_missing || n_unexpected))) {
        strbuf msg = {0};
        sb_printf(&msg, "%s '%s': nothing loaded:", op, f->path);
        if (n_mismatched) sb_printf(&msg, " %d mismatched: %s;", n_mismatched, mismatched.s);
        if (strict && n_missing) sb_printf(&msg, " %d missing from the file: %s;", n_missing, missing.s);
        if (strict && n_unexpected) sb_printf(&msg, " %d unexpected in the file: %s;", n_unexpected, unexpected.s);
        if (strict && !n_mismatched) sb_printf(&msg, " (pass strict=false to load the names that match)");
        st = kiln__error(KILN_STATUS_SHAPE, "%s", msg.s ? msg.s : op);
        free(msg.s);
    }
    free(missing.s);
    free(unexpected.s);
    free(mismatched.s);
    free(used);
    return st;
}

/* Entry e in a tensor over malloc'd memory: staging that goes back to the system
 * when the tensor dies, instead of staying in the pool's cache after the load. */
static kiln_tensor *read_staged(kiln_safetensors *f, const kiln_safetensors_entry *e) {
    uint64_t nb = e->end - e->begin;
    void *buf = malloc(nb ? nb : 1);
    if (!buf) {
        kiln__error(KILN_STATUS_OOM, "safetensors '%s': out of host memory staging tensor \"%.128s\" (%llu bytes)",
                    f->path, e->name, (unsigned long long)nb);
        return NULL;
    }
    kiln_tensor *t = read_bytes(f, e, buf) == KILN_STATUS_OK
                         ? kiln_tensor_from_external(buf, e->ndim, e->shape, NULL, (kiln_dtype)e->dtype, KILN_CPU,
                                                     free, buf)
                         : NULL;
    if (!t) free(buf);
    return t;
}

static kiln_status stage(const char *op, kiln_safetensors *f, const kiln_named_tensor *into, int n, bool strict,
                         kiln_tensor **staged) {
    for (int i = 0; i < n; i++) staged[i] = NULL;
    const kiln_safetensors_entry **match = calloc((size_t)n + 1, sizeof *match);
    if (!match) return kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
    kiln_status st = match_table(op, f, into, n, strict, match);
    /* Into host memory first (a read that fails, e.g. the file shrank, fails here),
     * then onto the destination's device (so that running out of device memory does too). */
    for (int i = 0; i < n && st == KILN_STATUS_OK; i++) {
        if (!match[i]) continue;
        kiln_tensor *t = read_staged(f, match[i]), *dst = into[i].tensor;
        if (t && dst->device.type != KILN_DEVICE_CPU) {
            kiln_tensor *d = kiln_tensor_numel(t) ? kiln_tensor_to(t, dst->device)
                                                  : kiln_tensor_empty(t->ndim, t->shape, t->dtype, dst->device);
            kiln_tensor_free(t);
            t = d;
        }
        if (!t) st = kiln_last_status() != KILN_STATUS_OK ? kiln_last_status()
                                                          : kiln__error(KILN_STATUS_OOM, "%s: cannot stage \"%.128s\"",
                                                                        op, match[i]->name);
        staged[i] = t;
    }
    if (st != KILN_STATUS_OK)
        for (int i = 0; i < n; i++) {
            kiln_tensor_free(staged[i]);
            staged[i] = NULL;
        }
    free(match);
    return st;
}

kiln_status kiln_safetensors_stage(kiln_safetensors *f, const kiln_named_tensor *into, int n, bool strict,
                                   kiln_tensor **staged) {
    const char *op = "kiln_safetensors_stage";
    if (!f || (n > 0 && !staged))
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: file or staged array is NULL", op);
    kiln_status st = check_into(op, into, n);
    /* match errors read "safetensors 'path': nothing loaded: ...", apt for any caller */
    return st == KILN_STATUS_OK ? stage("safetensors", f, into, n, strict, staged) : st;
}

kiln_status kiln_safetensors_commit(const kiln_named_tensor *into, int n, kiln_tensor *const *staged) {
    if (n < 0 || (n > 0 && (!into || !staged)))
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_safetensors_commit: tensors or staged array is NULL");
    kiln_status st = KILN_STATUS_OK;
    for (int i = 0; i < n && st == KILN_STATUS_OK; i++) {
        kiln_tensor *dst = into[i].tensor, *src = staged[i];
        if (!src) continue;
        if (!dst || !same_shape_dtype(dst, src) || !kiln_device_equal(dst->device, src->device))
            return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_safetensors_commit: staged[%d] (\"%.128s\") is not "
                               "what kiln_safetensors_stage made for that tensor; nothing written", i,
                               into[i].name ? into[i].name : "?");
    }
    for (int i = 0; i < n && st == KILN_STATUS_OK; i++) {
        kiln_tensor *dst = into[i].tensor, *src = staged[i];
        if (!src || kiln_tensor_numel(dst) == 0) continue;
        /* the same bytes the file holds (memcpy keeps NaN payloads and -0 exactly) */
        if (dst->device.type == KILN_DEVICE_CPU && kiln_tensor_is_contiguous(dst) && kiln_tensor_is_contiguous(src))
            memcpy(kiln__ptr(dst), kiln__ptr(src), (size_t)kiln_tensor_numel(dst) * kiln_dtype_size(dst->dtype));
        else
            st = kiln_tensor_copy_(dst, src);
    }
    return st;
}

kiln_status kiln_safetensors_load(const char *path, const kiln_named_tensor *into, int n, bool strict) {
    const char *op = "kiln_safetensors_load";
    kiln_status st = check_into(op, into, n);
    if (st != KILN_STATUS_OK) return st;
    kiln_safetensors *f = kiln_safetensors_open(path);
    if (!f) return kiln_last_status();
    kiln_tensor **staged = calloc((size_t)n + 1, sizeof *staged);
    if (!staged) {
        kiln_safetensors_close(f);
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
    }
    kiln_scope *s = kiln_scope_begin();
    st = stage(op, f, into, n, strict, staged);
    if (st == KILN_STATUS_OK) st = kiln_safetensors_commit(into, n, staged);
    kiln_scope_end(s);
    free(staged);
    kiln_safetensors_close(f);
    return st;
}

/* ---- writing ------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    kiln_tensor *t;
    const st_dtype *d;
} save_item;

static int cmp_save(const void *a, const void *b) {
    const save_item *x = a, *y = b;
    /* the safetensors package's order: larger alignment first, then by name */
    if (x->d->size != y->d->size) return x->d->size > y->d->size ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* jansson checks UTF-8 when it makes a string and exports no other checker; NULL
 * from it also means out of memory, which a string this size makes moot. */
static bool utf8_ok(const char *s) {
    json_t *j = s ? json_string(s) : NULL;
    json_decref(j);
    return j != NULL;
}

static bool valid_name(const char *s) { return s && s[0] && utf8_ok(s); }

/* The header as a jansson object in the file's order (metadata, then the tensors in
 * data order). jansson's set_new and append_new take their value even when they
 * fail, so the failures are or-ed together, never short-circuited: nothing leaks. */
static json_t *header_object(const save_item *items, int n, const kiln_metadata_entry *meta, int nmeta) {
    json_t *h = json_object();
    int bad = !h;
    if (nmeta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < nmeta; i++) bad |= json_object_set_new(m, meta[i].key, json_string(meta[i].value));
        bad |= json_object_set_new(h, "__metadata__", m);
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const kiln_tensor *t = items[i].t;
        uint64_t bytes = (uint64_t)kiln_tensor_numel(t) * items[i].d->size;
        json_t *e = json_object(), *shape = json_array(), *offs = json_array();
        for (int k = 0; k < t->ndim; k++) bad |= json_array_append_new(shape, json_integer(t->shape[k]));
        bad |= json_array_append_new(offs, json_integer((json_int_t)at));
        bad |= json_array_append_new(offs, json_integer((json_int_t)(at + bytes)));
        bad |= json_object_set_new(e, "dtype", json_string(items[i].d->name));
        bad |= json_object_set_new(e, "shape", shape);
        bad |= json_object_set_new(e, "data_offsets", offs);
        bad |= json_object_set_new(h, items[i].name, e);
        at += bytes;
    }
    if (bad) {
        json_decref(h);
        return NULL;
    }
    return h;
}

/* Builds the padded JSON header in memory (compact, as the safetensors package writes it). */
static char *build_header(const save_item *items, int n, const kiln_metadata_entry *meta, int nmeta, size_t *len) {
    json_t *h = header_object(items, n, meta, nmeta);
    if (!h) return NULL;
    size_t need = json_dumpb(h, NULL, 0, JSON_COMPACT);
    char *buf = need ? malloc(need + 8) : NULL;
    if (buf && json_dumpb(h, buf, need, JSON_COMPACT) != need) {
        free(buf);
        buf = NULL;
    }
    json_decref(h);
    if (!buf) return NULL;
    /* pad with spaces so the data area (after the 8-byte length) starts 8-byte aligned, as the package does */
    size_t padded = (need + 7) / 8 * 8;
    memset(buf + need, ' ', padded - need);
    *len = padded;
    return buf;
}

static kiln_status write_tensor(FILE *out, const save_item *it) {
    kiln_tensor *t = it->t;
    size_t bytes = (size_t)kiln_tensor_numel(t) * it->d->size;
    if (!bytes) return KILN_STATUS_OK;
    if (t->device.type == KILN_DEVICE_CPU && kiln_tensor_is_contiguous(t))
        return fwrite(kiln__ptr(t), 1, bytes, out) == bytes ? KILN_STATUS_OK : KILN_STATUS_IO;
    void *buf = malloc(bytes);
    if (!buf) return kiln__error(KILN_STATUS_OOM, "kiln_safetensors_save: out of host memory for \"%.128s\"",
                                 it->name);
    kiln_status st = kiln_tensor_to_host(t, buf, bytes);
    if (st == KILN_STATUS_OK && fwrite(buf, 1, bytes, out) != bytes) st = KILN_STATUS_IO;
    free(buf);
    return st;
}

/* ---- saving ----------------------------------------------------------------------------- */

kiln_status kiln_safetensors_save(const char *path, const kiln_named_tensor *tensors, int n,
                                  const kiln_metadata_entry *meta, int nmeta) {
    const char *op = "kiln_safetensors_save";
    if (!path || !path[0]) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: path is empty", op);
    if (n < 0 || (n > 0 && !tensors) || nmeta < 0 || (nmeta > 0 && !meta))
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: tensors or metadata array is NULL", op);
    for (int i = 0; i < nmeta; i++) {
        if (!valid_name(meta[i].key) || !utf8_ok(meta[i].value))
            return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: metadata entry %d needs a non-empty UTF-8 key and "
                               "a UTF-8 value", op, i);
        for (int j = 0; j < i; j++)
            if (!strcmp(meta[i].key, meta[j].key))
                return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: metadata key \"%.128s\" is given twice", op,
                                   meta[i].key);
    }
    save_item *items = calloc((size_t)n + 1, sizeof *items);
    if (!items) return kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op);
    kiln_status st = KILN_STATUS_OK;
    for (int i = 0; i < n && st == KILN_STATUS_OK; i++) {
        const kiln_named_tensor *nt = &tensors[i];
        if (!valid_name(nt->name) || !strcmp(nt->name, "__metadata__"))
            st = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: entry %d needs a non-empty UTF-8 name other than "
                             "\"__metadata__\"", op, i);
        else if (!nt->tensor)
            st = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: tensor \"%.128s\" is NULL (an earlier call failed?)",
                             op, nt->name);
        else
            items[i] = (save_item){nt->name, nt->tensor, dtype_of(nt->tensor->dtype)};
        for (int j = 0; j < i && st == KILN_STATUS_OK; j++)
            if (!strcmp(nt->name, tensors[j].name))
                st = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: name \"%.128s\" is given twice", op, nt->name);
    }
    if (st != KILN_STATUS_OK) {
        free(items);
        return st;
    }
    qsort(items, (size_t)n, sizeof *items, cmp_save);
    size_t hl = 0;
    char *header = build_header(items, n, meta, nmeta, &hl);
    if (!header) {
        free(items);
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory for the header", op);
    }

    /* Replace the file atomically (core/atomic_file.c): through a symbolic link, beside
     * the target, permission bits kept, stale temporaries of killed saves removed. */
    kiln__atomic_file af;
    st = kiln__atomic_begin(&af, op, path);
    if (st == KILN_STATUS_OK) {
        unsigned char lenb[8];
        for (int k = 0; k < 8; k++) lenb[k] = (unsigned char)((uint64_t)hl >> (8 * k));
        errno = 0;
        kiln_status ws = fwrite(lenb, 1, 8, af.f) != 8 || fwrite(header, 1, hl, af.f) != hl ? KILN_STATUS_IO
                                                                                            : KILN_STATUS_OK;
        for (int i = 0; i < n && ws == KILN_STATUS_OK; i++) ws = write_tensor(af.f, &items[i]);
        if (ws == KILN_STATUS_IO) {
            int err = errno ? errno : EIO;
            st = kiln__error(KILN_STATUS_IO, "%s: cannot write '%s': %s; the previous file, if any, is untouched",
                             op, af.target, strerror(err));
        } else {
            st = ws; /* write_tensor's own error (a tensor that cannot be read back), or OK */
        }
        if (st == KILN_STATUS_OK) st = kiln__atomic_commit(&af, op);
        else kiln__atomic_abort(&af);
    }
    free(items);
    free(header);
    return st;
}

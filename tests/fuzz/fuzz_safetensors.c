/* Fuzz harness: safetensors files (core/safetensors.c) through the public API. Opens
 * the input, checks the table against the bytes, reads every tensor (its bytes must be
 * the file's), uses each as a user would (cast, reductions), loads them all again with
 * kiln_safetensors_load, and checks a mismatched load is refused without writing. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

static uint64_t le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = v << 8 | b[k];
    return v;
}

static const uint8_t *g_data_area; /* the input's bytes after the header */

static void check_bytes(kiln_tensor *t, const kiln_safetensors_entry *e, const char *how) {
    size_t n;
    void *b = kf_tensor_bytes(t, &n);
    KF_CHECK(n == e->end - e->begin, "%s \"%s\": %zu bytes, the file's entry spans %llu", how, e->name, n,
             (unsigned long long)(e->end - e->begin));
    KF_CHECK(n == 0 || memcmp(b, g_data_area + e->begin, n) == 0, "%s \"%s\": the bytes differ from the file's", how,
             e->name);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = kf_input_path(data, size);
    kiln_scope *scope = kf_begin();
    kiln_safetensors *f = kiln_safetensors_open(path);
    kf_note("open: %s", f ? "ok" : kiln_last_error());
    if (!f) {
        kiln_status st = kiln_last_status();
        KF_CHECK(st == KILN_STATUS_FORMAT || st == KILN_STATUS_OOM, "open failed with %s: %s", kiln_status_name(st),
                 kiln_last_error());
        kf_end(scope);
        return 0;
    }
    /* an open file is a valid one: 8-byte length, header, then exactly the tensors */
    KF_CHECK(size >= 8, "a %zu-byte file opened", size);
    uint64_t hl = le64(data);
    KF_CHECK(hl <= size - 8, "header length %llu in a %zu-byte file", (unsigned long long)hl, size);
    g_data_area = data + 8 + hl;
    uint64_t data_len = size - 8 - hl, at = 0;
    int n = kiln_safetensors_count(f);
    KF_CHECK(n >= 0 && kiln_safetensors_entry_at(f, n) == NULL && kiln_safetensors_entry_at(f, -1) == NULL,
             "count %d", n);
    KF_CHECK(kiln_safetensors_find(f, "__metadata__") == NULL, "__metadata__ is listed as a tensor");
    for (int i = 0; i < n; i++) {
        const kiln_safetensors_entry *e = kiln_safetensors_entry_at(f, i);
        KF_CHECK(e && e->name && e->dtype_name, "entry %d", i);
        KF_CHECK(kiln_safetensors_find(f, e->name) == e, "find(\"%s\") is not entry %d", e->name, i);
        KF_CHECK(e->begin == at && e->end >= e->begin, "entry \"%s\" [%llu, %llu] is not the next back-to-back span "
                 "(at %llu)", e->name, (unsigned long long)e->begin, (unsigned long long)e->end,
                 (unsigned long long)at);
        at = e->end;
        KF_CHECK(e->ndim >= 0 && e->ndim <= KILN_MAX_DIMS, "entry \"%s\" has %d dimensions", e->name, e->ndim);
        KF_CHECK(e->dtype >= -1 && e->dtype < KILN_DTYPE_COUNT, "entry \"%s\" has dtype %d", e->name, e->dtype);
        bool zero = false;
        unsigned __int128 bytes = e->dtype >= 0 ? kiln_dtype_size((kiln_dtype)e->dtype) : 1;
        for (int k = 0; k < e->ndim; k++) {
            KF_CHECK(e->shape[k] >= 0, "entry \"%s\" has size %lld on axis %d", e->name, (long long)e->shape[k], k);
            if (e->shape[k] == 0) zero = true;
            else if (!zero && bytes <= UINT64_MAX) bytes *= (uint64_t)e->shape[k];
        }
        if (e->dtype >= 0)
            KF_CHECK((zero ? 0 : bytes) == e->end - e->begin, "entry \"%s\": its shape and dtype make %s%llu bytes, "
                     "its span %llu", e->name, bytes > UINT64_MAX ? "more than " : "",
                     (unsigned long long)(zero ? 0 : bytes > UINT64_MAX ? UINT64_MAX : bytes),
                     (unsigned long long)(e->end - e->begin));
    }
    KF_CHECK(at == data_len, "the entries cover %llu bytes of a %llu-byte data area", (unsigned long long)at,
             (unsigned long long)data_len);
    const kiln_metadata_entry *meta;
    int nm = kiln_safetensors_metadata(f, &meta);
    KF_CHECK(nm >= 0 && (nm == 0 || meta), "metadata count %d", nm);
    for (int i = 0; i < nm; i++) {
        KF_CHECK(meta[i].key && meta[i].value, "metadata entry %d", i);
        KF_CHECK(kiln_safetensors_metadata_get(f, meta[i].key) == meta[i].value, "metadata_get(\"%s\")", meta[i].key);
    }

    /* every tensor, read and used */
    for (int i = 0; i < n; i++) {
        const kiln_safetensors_entry *e = kiln_safetensors_entry_at(f, i);
        kiln_clear_error();
        kiln_tensor *t = kiln_safetensors_read(f, e->name);
        if (e->dtype < 0) {
            KF_CHECK(!t && kiln_last_status() == KILN_STATUS_DTYPE, "reading \"%s\" (%s, no kiln dtype)", e->name,
                     e->dtype_name);
            continue;
        }
        kf_note("read \"%s\": %s", e->name, t ? "ok" : kiln_last_error());
        if (!t) {
            KF_CHECK(kiln_last_status() != KILN_STATUS_OK, "reading \"%s\" returned NULL without an error", e->name);
            continue; /* e.g. a declared shape kiln refuses */
        }
        KF_CHECK(kiln_tensor_dtype(t) == (kiln_dtype)e->dtype && kiln_tensor_ndim(t) == e->ndim,
                 "\"%s\" read back with another dtype or rank", e->name);
        for (int k = 0; k < e->ndim; k++)
            KF_CHECK(kiln_tensor_size(t, k) == e->shape[k], "\"%s\" read back with size %lld on axis %d, not %lld",
                     e->name, (long long)kiln_tensor_size(t, k), k, (long long)e->shape[k]);
        check_bytes(t, e, "read");
        kf_use_tensor(t, e->name);
    }

    /* kiln_safetensors_load into tensors of the file's geometry: all of them when kiln has
     * their dtypes (strict), else those it has */
    kiln_named_tensor *into = calloc((size_t)n + 1, sizeof *into);
    const kiln_safetensors_entry **which = calloc((size_t)n + 1, sizeof *which);
    KF_CHECK(into && which, "out of host memory");
    int k = 0;
    bool every = true;
    for (int i = 0; i < n; i++) {
        const kiln_safetensors_entry *e = kiln_safetensors_entry_at(f, i);
        kiln_clear_error();
        kiln_tensor *t = e->dtype >= 0 ? kiln_tensor_zeros(e->ndim, e->shape, (kiln_dtype)e->dtype, KILN_CPU) : NULL;
        if (!t) {
            every = false;
            continue;
        }
        which[k] = e;
        into[k++] = (kiln_named_tensor){e->name, t};
    }
    kiln_clear_error();
    kiln_status st = kiln_safetensors_load(path, into, k, every);
    kf_note("load of %d entries (strict %d): %s", k, every, st ? kiln_last_error() : "ok");
    KF_CHECK(st == KILN_STATUS_OK || st == KILN_STATUS_OOM, "loading the file's own %d entries (strict %d) failed: %s",
             k, every, kiln_status_name(st));
    if (st == KILN_STATUS_OK)
        for (int i = 0; i < k; i++) check_bytes(into[i].tensor, which[i], "loaded");

    /* a load with one tensor of the wrong shape is refused and writes nothing */
    if (k > 0) {
        int64_t len = kiln_tensor_numel(into[0].tensor) + 1;
        kiln_clear_error();
        kiln_tensor *wrong = kiln_tensor_full(1, &len, 7, (kiln_dtype)which[0]->dtype, KILN_CPU);
        if (wrong) {
            kiln_named_tensor w[2] = {{which[0]->name, wrong}, {NULL, NULL}};
            int nw = 1;
            if (k > 1) w[nw++] = into[1];
            kiln_clear_error();
            st = kiln_safetensors_load(path, w, nw, false);
            KF_CHECK(st == KILN_STATUS_SHAPE, "loading \"%s\" into a tensor of %lld elements gave %s", which[0]->name,
                     (long long)len, kiln_status_name(st));
            kiln_tensor *seven = kiln_tensor_full(1, &len, 7, (kiln_dtype)which[0]->dtype, KILN_CPU);
            if (seven) {
                size_t n1, n2;
                void *a = kf_tensor_bytes(wrong, &n1), *b = kf_tensor_bytes(seven, &n2);
                KF_CHECK(n1 == n2 && memcmp(a, b, n1) == 0, "a refused load wrote into \"%s\"", which[0]->name);
                free(a);
                free(b);
            }
        }
    }
    free(into);
    free(which);
    kiln_safetensors_close(f);
    kf_end(scope);
    return 0;
}

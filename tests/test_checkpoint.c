/* safetensors checkpoints: round trips (values, names, dtypes, metadata), a file
 * written by the Python safetensors package from a PyTorch state_dict, load-time
 * reports of missing/unexpected/mismatched names, atomic writes that survive a
 * failing write, and every kind of corrupt or truncated file (errors, never crashes). */
#include "support/kiln_test.h"
#include "fixtures/torch_small_ref.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>

TestSuite(checkpoint, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* The temporary directory / name, in one of four rotating buffers. */
static const char *tmp_path(const char *name) {
    static char buf[4][128];
    static int k;
    return kt_scratch_path(buf[k++ % 4], sizeof buf[0], name);
}

/* Number of directory entries other than . and .. (optionally listing those containing needle). */
static int dir_count(const char *needle) {
    DIR *d = opendir(kt_scratch_dir());
    cr_assert(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!needle || strstr(e->d_name, needle))) n++;
    closedir(d);
    return n;
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

static void write_all(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* A file with header length hl (the real length when hl == UINT64_MAX), header text and n data bytes. */
static const char *craft(const char *name, uint64_t hl, const char *header, size_t ndata) {
    size_t h = strlen(header);
    if (hl == UINT64_MAX) hl = h;
    unsigned char *b = calloc(8 + h + ndata + 1, 1);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)(hl >> (8 * k));
    memcpy(b + 8, header, h);
    for (size_t k = 0; k < ndata; k++) b[8 + h + k] = (unsigned char)(k * 37 + 1);
    const char *p = tmp_path(name);
    write_all(p, b, 8 + h + ndata);
    free(b);
    return p;
}

static void expect_corrupt(const char *path, const char *needle) {
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_expect_null(f, "%s opened although it is corrupt (expected '%s')", path, needle);
    kiln_safetensors_close(f);
    kt_expect_error(KILN_STATUS_FORMAT, needle);
}

static kiln_tensor *cast(kiln_tensor *t, kiln_dtype dt) {
    kiln_tensor *c = kiln_tensor_cast(t, dt);
    cr_assert(c, "cast: %s", kiln_last_error());
    return c;
}

/* ---- round trips -------------------------------------------------------------------------- */

KT_TEST(checkpoint, round_trip_values_names_dtypes_metadata) {
    kiln_tensor *w = KT_F32(2, KT_SHAPE(2, 3), {1.5, -2, 3, 4e-3, 5, -6});
    kiln_tensor *b = KT_F64(1, KT_SHAPE(4), {0.1, 0.2, -0.3, 1e300});
    kiln_tensor *steps = cast(kiln_tensor_scalar(123456789012.0, KILN_F64, KILN_CPU), KILN_I64);
    kiln_tensor *mask = cast(KT_F64(1, KT_SHAPE(5), {0, 1, 255, 7, 8}), KILN_U8);
    kiln_tensor *h = cast(KT_F64(1, KT_SHAPE(3), {0.5, -2, 1024}), KILN_F16);
    kiln_tensor *bf = cast(KT_F64(1, KT_SHAPE(2), {1.5, -3}), KILN_BF16);
    kiln_tensor *i = cast(KT_F64(2, KT_SHAPE(2, 2), {1, -2, 3, -4}), KILN_I32);
    kiln_tensor *empty = kiln_tensor_zeros(2, (int64_t[]){0, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *t = kiln_transpose(KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6}), 0, 1); /* strided [3,2] */
    kiln_named_tensor ts[] = {{"enc1.0.weight", w}, {"b", b}, {"steps", steps}, {"mask", mask}, {"half", h},
                              {"bf", bf}, {"i32", i}, {"empty", empty}, {"t", t}};
    kiln_metadata_entry meta[] = {{"epoch", "3"}, {"note", "quote \" backslash \\ newline \n \xc3\xbc"}};
    const char *path = tmp_path("a.safetensors");
    cr_assert_eq(kiln_safetensors_save(path, ts, 9, meta, 2), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(dir_count(".tmp."), 0, "the temporary file was renamed away");

    size_t n;
    unsigned char *raw = read_all(path, &n);
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = hl << 8 | raw[k];
    cr_expect_eq((8 + hl) % 8, 0, "the data area starts 8-byte aligned, as the safetensors package writes it");
    cr_expect_eq(raw[8], '{');
    free(raw);

    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s", kiln_last_error());
    cr_expect_eq(kiln_safetensors_count(f), 9);
    cr_expect_str_eq(kiln_safetensors_metadata_get(f, "epoch"), "3");
    cr_expect_str_eq(kiln_safetensors_metadata_get(f, "note"), meta[1].value);
    cr_expect_null(kiln_safetensors_metadata_get(f, "absent"));
    const kiln_metadata_entry *me;
    cr_expect_eq(kiln_safetensors_metadata(f, &me), 2);
    const kiln_safetensors_entry *e = kiln_safetensors_find(f, "enc1.0.weight");
    cr_assert(e);
    cr_expect(e->dtype == KILN_F32 && !strcmp(e->dtype_name, "F32") && e->ndim == 2 && e->shape[0] == 2 &&
              e->shape[1] == 3 && e->end - e->begin == 24);
    e = kiln_safetensors_find(f, "steps");
    cr_expect(e && e->ndim == 0 && e->dtype == KILN_I64 && !strcmp(e->dtype_name, "I64"));
    cr_expect_str_eq(kiln_safetensors_find(f, "half")->dtype_name, "F16");
    cr_expect_str_eq(kiln_safetensors_find(f, "bf")->dtype_name, "BF16");
    cr_expect_str_eq(kiln_safetensors_find(f, "mask")->dtype_name, "U8");
    cr_expect_str_eq(kiln_safetensors_find(f, "i32")->dtype_name, "I32");
    cr_expect_null(kiln_safetensors_find(f, "nope"));
    cr_expect_null(kiln_safetensors_entry_at(f, 9));
    /* data order: larger dtypes first, then by name (the safetensors package's order) */
    cr_expect_str_eq(kiln_safetensors_entry_at(f, 0)->name, "b");
    cr_expect_str_eq(kiln_safetensors_entry_at(f, 1)->name, "steps");
    for (int k = 1; k < 9; k++)
        cr_expect_eq(kiln_safetensors_entry_at(f, k)->begin, kiln_safetensors_entry_at(f, k - 1)->end);
    KT_EXPECT(kiln_safetensors_read(f, "t"), 0, 0, {1, 4, 2, 5, 3, 6});
    cr_expect_null(kiln_safetensors_read(f, "nope"));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "nope");
    kiln_safetensors_close(f);

    /* load into fresh tensors; "t" into a strided destination */
    kiln_tensor *w2 = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *b2 = kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F64, KILN_CPU);
    kiln_tensor *s2 = kiln_tensor_zeros(0, NULL, KILN_I64, KILN_CPU);
    kiln_tensor *m2 = kiln_tensor_zeros(1, (int64_t[]){5}, KILN_U8, KILN_CPU);
    kiln_tensor *h2 = kiln_tensor_zeros(1, (int64_t[]){3}, KILN_F16, KILN_CPU);
    kiln_tensor *bf2 = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_BF16, KILN_CPU);
    kiln_tensor *i2 = kiln_tensor_zeros(2, (int64_t[]){2, 2}, KILN_I32, KILN_CPU);
    kiln_tensor *e2 = kiln_tensor_zeros(2, (int64_t[]){0, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *tbase = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *t2 = kiln_transpose(tbase, 0, 1);
    kiln_named_tensor into[] = {{"enc1.0.weight", w2}, {"b", b2}, {"steps", s2}, {"mask", m2}, {"half", h2},
                                {"bf", bf2}, {"i32", i2}, {"empty", e2}, {"t", t2}};
    cr_assert_eq(kiln_safetensors_load(path, into, 9, true), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(w2, 0, 0, {1.5f, -2, 3, 4e-3f, 5, -6});
    KT_EXPECT(b2, 0, 0, {0.1, 0.2, -0.3, 1e300});
    cr_expect_eq(*(int64_t *)kiln_tensor_data(s2), 123456789012);
    KT_EXPECT(m2, 0, 0, {0, 1, 255, 7, 8});
    cr_expect(!memcmp(kiln_tensor_data(h2), kiln_tensor_data(h), 6) && !memcmp(kiln_tensor_data(bf2),
              kiln_tensor_data(bf), 4), "f16/bf16 bytes round-trip");
    KT_EXPECT(i2, 0, 0, {1, -2, 3, -4});
    KT_EXPECT(tbase, 0, 0, {1, 2, 3, 4, 5, 6});
    kt_scratch_remove();
}

KT_TEST(checkpoint, file_written_by_pytorch_safetensors_loads_by_name) {
    const char *path = "tests/fixtures/torch_small.safetensors";
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s", kiln_last_error());
    cr_expect_eq(kiln_safetensors_count(f), TORCH_REF_N);
    cr_expect(kiln_safetensors_metadata_get(f, "generated_by") != NULL);
    kiln_safetensors_close(f);
    kiln_named_tensor into[TORCH_REF_N];
    for (int k = 0; k < TORCH_REF_N; k++) {
        const torch_ref_tensor *r = &torch_ref[k];
        into[k] = (kiln_named_tensor){r->name, kiln_tensor_zeros(r->ndim, r->shape, (kiln_dtype)r->dtype, KILN_CPU)};
    }
    cr_assert_eq(kiln_safetensors_load(path, into, TORCH_REF_N, true), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int k = 0; k < TORCH_REF_N; k++) {
        const torch_ref_tensor *r = &torch_ref[k];
        kiln_tensor *t = into[k].tensor;
        if (r->dtype == KILN_F16 || r->dtype == KILN_BF16) t = cast(t, KILN_F64);
        double *v = kt_values(t);
        for (int j = 0; j < r->numel; j++)
            cr_expect_eq(v[j], r->values[j], "%s[%d]: %.17g, torch %.17g", r->name, j, v[j], r->values[j]);
        free(v);
    }
}

/* ---- what load reports ---------------------------------------------------------------------- */

KT_TEST(checkpoint, load_reports_every_missing_unexpected_and_mismatched_name) {
    const char *path = tmp_path("m.safetensors");
    kiln_named_tensor ts[] = {{"a", KT_F32(1, KT_SHAPE(2), {1, 2})},
                              {"b", KT_F32(2, KT_SHAPE(2, 2), {1, 2, 3, 4})},
                              {"c", KT_F32(1, KT_SHAPE(1), {9})},
                              {"d", KT_F64(1, KT_SHAPE(1), {9})}};
    cr_assert_eq(kiln_safetensors_save(path, ts, 4, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *a = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_zeros(2, (int64_t[]){4, 1}, KILN_F32, KILN_CPU);
    kiln_tensor *d = kiln_tensor_zeros(1, (int64_t[]){1}, KILN_F32, KILN_CPU); /* file has F64 */
    kiln_tensor *x = kiln_tensor_zeros(1, (int64_t[]){1}, KILN_F32, KILN_CPU);
    kiln_named_tensor into[] = {{"a", a}, {"b", b}, {"d", d}, {"x", x}};
    cr_expect_eq(kiln_safetensors_load(path, into, 4, true), KILN_STATUS_SHAPE);
    const char *msg = kiln_last_error();
    cr_expect(strstr(msg, "2 mismatched") && strstr(msg, "\"b\" (file F32[2, 2], tensor f32[4, 1]") &&
              strstr(msg, "\"d\" (file F64[1]") && strstr(msg, "missing from the file: \"x\"") &&
              strstr(msg, "unexpected in the file: \"c\"") && strstr(msg, "nothing loaded"), "message: %s", msg);
    kiln_clear_error();
    KT_EXPECT(a, 0, 0, {0, 0}); /* nothing written when anything is wrong */
    /* non-strict still refuses mismatches */
    cr_expect_eq(kiln_safetensors_load(path, into, 4, false), KILN_STATUS_SHAPE);
    msg = kiln_last_error();
    cr_expect(strstr(msg, "\"b\"") && !strstr(msg, "missing"), "message: %s", msg);
    kiln_clear_error();
    /* non-strict loads what matches, ignoring missing and unexpected names */
    kiln_named_tensor some[] = {{"a", a}, {"x", x}};
    cr_expect_eq(kiln_safetensors_load(path, some, 2, false), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(a, 0, 0, {1, 2});
    cr_expect_eq(kiln_safetensors_load(path, some, 2, true), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "strict=false");
    kiln_named_tensor twice[] = {{"a", a}, {"a", a}};
    cr_expect_eq(kiln_safetensors_load(path, twice, 2, false), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "twice");
    cr_expect_eq(kiln_safetensors_load(tmp_path("absent.safetensors"), some, 2, false), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "cannot open");
    kt_scratch_remove();
}

/* ---- atomic writes -------------------------------------------------------------------------- */

KT_TEST(checkpoint, failing_write_leaves_the_previous_file_intact) {
    const char *path = tmp_path("ckpt.safetensors");
    kiln_named_tensor old[] = {{"w", KT_F32(1, KT_SHAPE(3), {1, 2, 3})}};
    cr_assert_eq(kiln_safetensors_save(path, old, 1, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    size_t n0;
    unsigned char *before = read_all(path, &n0);

    /* A real write failure: the file size limit (EFBIG) hits while the big tensor is written. */
    kiln_named_tensor big[] = {{"w", kiln_tensor_zeros(1, (int64_t[]){1 << 16}, KILN_F32, KILN_CPU)}};
    struct rlimit saved, lim;
    getrlimit(RLIMIT_FSIZE, &saved);
    lim = saved;
    lim.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    kiln_status st = kiln_safetensors_save(path, big, 1, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &saved);
    cr_expect_eq(st, KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "untouched");
    size_t n1;
    unsigned char *after = read_all(path, &n1);
    cr_expect(n0 == n1 && !memcmp(before, after, n0), "the previous checkpoint changed");
    cr_expect_eq(dir_count(NULL), 1, "the temporary file was not removed");
    free(before);
    free(after);

    /* Bad arguments fail before any file is created. */
    kiln_named_tensor dup[] = {{"w", old[0].tensor}, {"w", old[0].tensor}};
    cr_expect_eq(kiln_safetensors_save(tmp_path("x.safetensors"), dup, 2, NULL, 0), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "twice");
    kiln_named_tensor reserved[] = {{"__metadata__", old[0].tensor}};
    cr_expect_eq(kiln_safetensors_save(tmp_path("x.safetensors"), reserved, 1, NULL, 0), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "__metadata__");
    kiln_named_tensor null[] = {{"w", NULL}};
    cr_expect_eq(kiln_safetensors_save(tmp_path("x.safetensors"), null, 1, NULL, 0), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    kiln_metadata_entry badmeta[] = {{"k", "\xff"}};
    cr_expect_eq(kiln_safetensors_save(tmp_path("x.safetensors"), old, 1, badmeta, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "UTF-8");
    cr_expect_eq(dir_count(NULL), 1);
    cr_expect_eq(kiln_safetensors_save("/nonexistent-kiln-dir/x.safetensors", old, 1, NULL, 0), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "temporary");

    /* and a successful save replaces it whole */
    kiln_named_tensor newer[] = {{"w", KT_F32(1, KT_SHAPE(3), {7, 8, 9})}};
    cr_assert_eq(kiln_safetensors_save(path, newer, 1, NULL, 0), KILN_STATUS_OK);
    kiln_tensor *w = kiln_tensor_zeros(1, (int64_t[]){3}, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_safetensors_load(path, &(kiln_named_tensor){"w", w}, 1, true), KILN_STATUS_OK);
    KT_EXPECT(w, 0, 0, {7, 8, 9});
    kt_scratch_remove();
}

/* ---- corrupt files --------------------------------------------------------------------------- */

#define ENTRY(name, dt, shape, b, e) "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

KT_TEST(checkpoint, corrupt_headers_are_format_errors) {
    const char *ok = "{" ENTRY("a", "F32", "[2]", 0, 8) "}";
    /* sanity: the crafted form is valid */
    kiln_safetensors *f = kiln_safetensors_open(craft("ok", UINT64_MAX, ok, 8));
    cr_assert(f, "%s", kiln_last_error());
    kiln_safetensors_close(f);

    expect_corrupt(craft("short", 5, "", 0), "runs past the end"); /* only the length field */
    {
        const char *p = tmp_path("five");
        write_all(p, "abcde", 5);
        expect_corrupt(p, "too short");
    }
    expect_corrupt(craft("hl0", 0, ok, 8), "not sane");
    expect_corrupt(craft("hlhuge", 1ull << 62, ok, 8), "not sane");
    expect_corrupt(craft("hlpast", 1000, ok, 8), "runs past the end");
    expect_corrupt(craft("hlshort", strlen(ok) - 3, ok, 8), "malformed");
    expect_corrupt(craft("hllong", strlen(ok) + 4, ok, 8), "malformed");
    expect_corrupt(craft("notobj", UINT64_MAX, "[1, 2]", 0), "start with '{'");
    expect_corrupt(craft("badjson1", UINT64_MAX, "{" ENTRY("a", "F32", "[2]", 0, 8), 8), "malformed");
    expect_corrupt(craft("badjson2", UINT64_MAX, "{\"a\": nope}", 0), "malformed");
    expect_corrupt(craft("badjson3", UINT64_MAX, "{" ENTRY("a", "F32", "[2]", 0, 8) ",}", 8), "malformed");
    expect_corrupt(craft("badjson4", UINT64_MAX, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,08]}}", 8),
                   "malformed");
    expect_corrupt(craft("badutf8", UINT64_MAX, "{\"\xc3\x28\":{}}", 0), "UTF-8");
    expect_corrupt(craft("dupkey", UINT64_MAX, "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("a", "F32", "[1]", 4, 8) "}",
                         8), "duplicate");
    expect_corrupt(craft("dtype", UINT64_MAX, "{" ENTRY("a", "F33", "[2]", 0, 8) "}", 8), "unknown dtype \"F33\"");
    expect_corrupt(craft("nodtype", UINT64_MAX, "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8), "dtype");
    expect_corrupt(craft("mismatch", UINT64_MAX, "{" ENTRY("a", "F32", "[3]", 0, 8) "}", 8), "span 8 bytes");
    expect_corrupt(craft("overflow", UINT64_MAX,
                         "{" ENTRY("a", "F32", "[1099511627776,1099511627776,1099511627776]", 0, 8) "}", 8),
                   "cannot hold");
    expect_corrupt(craft("negshape", UINT64_MAX, "{" ENTRY("a", "F32", "[-2]", 0, 8) "}", 8), "not a size");
    expect_corrupt(craft("fracshape", UINT64_MAX, "{" ENTRY("a", "F32", "[2.0]", 0, 8) "}", 8), "not a size");
    expect_corrupt(craft("dims", UINT64_MAX, "{" ENTRY("a", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) "}", 1), "dimensions");
    expect_corrupt(craft("overlap", UINT64_MAX, "{" ENTRY("a", "F32", "[2]", 0, 8) "," ENTRY("b", "F32", "[2]", 4, 12) "}",
                         12), "overlaps");
    expect_corrupt(craft("past", UINT64_MAX, "{" ENTRY("a", "F32", "[2]", 0, 8) "}", 4), "past the end of the data");
    expect_corrupt(craft("gap", UINT64_MAX, "{" ENTRY("a", "F32", "[1]", 0, 4) "," ENTRY("b", "F32", "[1]", 8, 12) "}",
                         12), "belong to no tensor");
    expect_corrupt(craft("trailing", UINT64_MAX, "{" ENTRY("a", "F32", "[1]", 0, 4) "}", 8), "cover 4 bytes");
    expect_corrupt(craft("backwards", UINT64_MAX, "{" ENTRY("a", "F32", "[0]", 8, 4) "}", 8), "end before");
    expect_corrupt(craft("offs3", UINT64_MAX, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8),
                   "data_offsets");
    expect_corrupt(craft("metaval", UINT64_MAX, "{\"__metadata__\":{\"k\":3}," ENTRY("a", "F32", "[1]", 0, 4) "}", 4),
                   "__metadata__");
    expect_corrupt(craft("deep", UINT64_MAX,
                         "{\"__metadata__\":" "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]" "}", 0),
                   "nesting");

    /* load on a corrupt file is a format error that writes nothing */
    kiln_tensor *a = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_safetensors_load(tmp_path("overlap"), &(kiln_named_tensor){"a", a}, 1, false),
                 KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "overlaps");
    KT_EXPECT(a, 0, 0, {0, 0});

    /* a valid dtype kiln has no tensors of lists fine but cannot be read */
    f = kiln_safetensors_open(craft("i8", UINT64_MAX, "{" ENTRY("q", "I8", "[4]", 0, 4) "}", 4));
    cr_assert(f, "%s", kiln_last_error());
    cr_expect_eq(kiln_safetensors_entry_at(f, 0)->dtype, -1);
    cr_expect_null(kiln_safetensors_read(f, "q"));
    kt_expect_error(KILN_STATUS_DTYPE, "I8");
    kiln_safetensors_close(f);
    cr_expect_null(kiln_safetensors_open(tmp_path("does-not-exist")));
    kt_expect_error(KILN_STATUS_IO, "cannot open");
    kt_scratch_remove();
}

/* Every truncation of a valid file, and single-byte corruptions all over its header,
 * give errors or valid tables, never crashes (the ASan build checks the reads). */
KT_TEST(checkpoint, truncations_and_byte_flips_never_crash) {
    const char *path = tmp_path("v.safetensors");
    kiln_named_tensor ts[] = {{"weight", KT_F32(2, KT_SHAPE(2, 2), {1, 2, 3, 4})},
                              {"bias", KT_F64(1, KT_SHAPE(2), {5, 6})}};
    kiln_metadata_entry meta[] = {{"step", "10"}};
    cr_assert_eq(kiln_safetensors_save(path, ts, 2, meta, 1), KILN_STATUS_OK);
    size_t n;
    unsigned char *raw = read_all(path, &n);
    const char *cut = tmp_path("cut.safetensors");
    for (size_t len = 0; len < n; len++) {
        write_all(cut, raw, len);
        kiln_safetensors *f = kiln_safetensors_open(cut);
        cr_expect_null(f, "a file truncated to %zu of %zu bytes opened", len, n);
        kiln_safetensors_close(f);
        cr_expect_eq(kiln_last_status(), KILN_STATUS_FORMAT, "truncated to %zu: %s", len, kiln_last_error());
        kiln_clear_error();
    }
    uint64_t hl = 0;
    for (int k = 7; k >= 0; k--) hl = hl << 8 | raw[k];
    const unsigned char flips[] = {0x01, 0x20, 0x80, 0xff};
    int opened = 0;
    for (size_t at = 0; at < 8 + hl; at++)
        for (int k = 0; k < 4; k++) {
            raw[at] ^= flips[k];
            write_all(cut, raw, n);
            raw[at] ^= flips[k];
            kiln_safetensors *f = kiln_safetensors_open(cut);
            if (f) {
                opened++;
                for (int e = 0; e < kiln_safetensors_count(f); e++) {
                    kiln_scope *s = kiln_scope_begin();
                    kiln_safetensors_read(f, kiln_safetensors_entry_at(f, e)->name);
                    kiln_scope_end(s);
                }
            }
            kiln_safetensors_close(f);
            cr_expect(f || kiln_last_status() == KILN_STATUS_FORMAT, "flip at %zu: %s", at, kiln_last_error());
            kiln_clear_error();
        }
    cr_expect(opened > 0, "some flips (inside names or metadata) keep the file valid");
    free(raw);
    kt_scratch_remove();
}

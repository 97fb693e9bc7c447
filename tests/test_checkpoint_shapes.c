/* Hostile shapes and offsets in safetensors headers, crafted by hand: sizes whose
 * product, or product times the element size, overflows; empty tensors with huge
 * other axes (legitimate when kiln can hold them); negative, huge and too many
 * axes; data_offsets that overlap, run backwards or past the file. Each file opens
 * with exactly the checked sizes or fails with KILN_STATUS_FORMAT naming the tensor
 * and its shape. Only the loader's own results are looked at, no ops are run. */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(checkpoint_shapes, .init = kiln_test_setup, .fini = kiln_test_teardown);

static char g_path[160];

/* A file: 8-byte header length, the header, ndata data bytes. */
static const char *craft(const char *header, size_t ndata) {
    kt_scratch_path(g_path, sizeof g_path, "f.safetensors");
    size_t h = strlen(header);
    unsigned char *b = calloc(8 + h + ndata + 1, 1);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)h >> (8 * k));
    memcpy(b + 8, header, h);
    for (size_t k = 0; k < ndata; k++) b[8 + h + k] = (unsigned char)(k * 37 + 1);
    FILE *f = fopen(g_path, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(b, 1, 8 + h + ndata, f), 8 + h + ndata);
    fclose(f);
    free(b);
    return g_path;
}

#define ENTRY(name, dt, shape, offsets) \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"

/* The file does not open: a format error whose message has every needle. */
static void refused(const char *header, size_t ndata, const char *n1, const char *n2) {
    kiln_safetensors *f = kiln_safetensors_open(craft(header, ndata));
    cr_expect_null(f, "opened: %s", header);
    kiln_safetensors_close(f);
    const char *msg = kiln_last_error();
    cr_expect_eq(kiln_last_status(), KILN_STATUS_FORMAT, "%s: status %s: %s", header,
                 kiln_status_name(kiln_last_status()), msg);
    cr_expect(strstr(msg, n1) && (!n2 || strstr(msg, n2)), "%s: the message does not name '%s' and '%s': %s", header,
              n1, n2 ? n2 : "", msg);
    kiln_clear_error();
}

/* The file opens and tensor "a" is empty with this shape, read and loaded as such. */
static void empty_ok(const char *header, kiln_dtype dt, int ndim, const int64_t *shape) {
    const char *path = craft(header, 0);
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s: %s", header, kiln_last_error());
    const kiln_safetensors_entry *e = kiln_safetensors_find(f, "a");
    cr_assert(e);
    cr_expect_eq(e->ndim, ndim);
    for (int k = 0; k < ndim; k++) cr_expect_eq(e->shape[k], shape[k], "%s: axis %d", header, k);
    cr_expect(e->begin == 0 && e->end == 0, "%s: offsets [%llu, %llu]", header, (unsigned long long)e->begin,
              (unsigned long long)e->end);
    kiln_tensor *t = kiln_safetensors_read(f, "a");
    cr_assert(t, "%s: %s", header, kiln_last_error());
    kt_expect_shape(t, ndim, shape);
    cr_expect_eq(kiln_tensor_numel(t), 0);
    cr_expect_eq(kiln_tensor_dtype(t), dt);
    cr_expect_eq(kiln_tensor_numel(t) * (int64_t)kiln_dtype_size(dt), 0, "no bytes");
    kiln_safetensors_close(f);
    kiln_tensor *into = kiln_tensor_empty(ndim, shape, dt, KILN_CPU);
    cr_assert(into, "%s", kiln_last_error());
    cr_expect_eq(kiln_safetensors_load(path, &(kiln_named_tensor){"a", into}, 1, true), KILN_STATUS_OK, "%s: %s",
                 header, kiln_last_error());
}

KT_TEST(checkpoint_shapes, the_83_byte_file_with_shape_0_2p62_2) {
    /* valid for the safetensors package (its checked product is 0) but strides of
     * [0, 2^62, 2] reach 2^63: kiln tensors cannot hold it, so it is refused by name */
    const char *h = "{" ENTRY("a", "U8", "[0,4611686018427387904,2]", "[0,0]") "}";
    cr_assert_eq(8 + strlen(h), 83);
    refused(h, 0, "\"a\"", "U8[0, 4611686018427387904, 2]");
    /* one factor of 2 less and it is an ordinary empty tensor */
    empty_ok("{" ENTRY("a", "U8", "[0,4611686018427387904,1]", "[0,0]") "}", KILN_U8, 3,
             (int64_t[]){0, 4611686018427387904, 1});
    kt_scratch_remove();
}

KT_TEST(checkpoint_shapes, empty_tensors_with_huge_axes_load) {
    empty_ok("{" ENTRY("a", "U8", "[4611686018427387904,0]", "[0,0]") "}", KILN_U8, 2,
             (int64_t[]){4611686018427387904, 0});
    empty_ok("{" ENTRY("a", "F32", "[4294967296,0]", "[0,0]") "}", KILN_F32, 2, (int64_t[]){4294967296, 0});
    empty_ok("{" ENTRY("a", "F32", "[0,4294967296]", "[0,0]") "}", KILN_F32, 2, (int64_t[]){0, 4294967296});
    empty_ok("{" ENTRY("a", "F64", "[0,576460752303423488]", "[0,0]") "}", KILN_F64, 2,
             (int64_t[]){0, 576460752303423488}); /* 8 * 2^59 = 2^62 bytes of extent */
    empty_ok("{" ENTRY("a", "I64", "[0,0,0,0,0,0,0,0]", "[0,0]") "}", KILN_I64, 8, (int64_t[]){0, 0, 0, 0, 0, 0, 0, 0});
    /* an empty tensor between two others, and tensors listed out of data order */
    const char *path = craft("{" ENTRY("b", "F32", "[1]", "[4,8]") "," ENTRY("e", "F32", "[0,3]", "[4,4]") ","
                             ENTRY("a", "F32", "[1]", "[0,4]") "}", 8);
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_safetensors_entry_at(f, 0)->name, "a");
    cr_expect_str_eq(kiln_safetensors_entry_at(f, 2)->name, "b");
    kiln_safetensors_close(f);
    kt_scratch_remove();
}

KT_TEST(checkpoint_shapes, overflowing_sizes_are_refused_by_name) {
    /* the element count overflows int64 (and wraps to 0 in 64-bit unsigned arithmetic) */
    refused("{" ENTRY("a", "U8", "[4294967296,4294967296]", "[0,0]") "}", 0, "\"a\"", "U8[4294967296, 4294967296]");
    refused("{" ENTRY("w", "F32", "[1099511627776,1099511627776,1099511627776]", "[0,8]") "}", 8, "\"w\"",
            "F32[1099511627776, 1099511627776, 1099511627776]");
    /* the count fits but times the element size does not */
    refused("{" ENTRY("a", "F32", "[2147483648,2147483648]", "[0,0]") "}", 0, "\"a\"", "F32[2147483648, 2147483648]");
    refused("{" ENTRY("a", "F64", "[2305843009213693952]", "[0,0]") "}", 0, "\"a\"", "F64[2305843009213693952]");
    refused("{" ENTRY("a", "I64", "[1152921504606846976]", "[0,8]") "}", 8, "\"a\"", "I64[1152921504606846976]");
    refused("{" ENTRY("a", "BF16", "[4611686018427387904]", "[0,0]") "}", 0, "\"a\"", "BF16[4611686018427387904]");
    /* an empty axis does not excuse the others: their strides would still overflow */
    refused("{" ENTRY("a", "F32", "[4611686018427387904,0]", "[0,0]") "}", 0, "\"a\"", "F32[4611686018427387904, 0]");
    refused("{" ENTRY("a", "F32", "[1099511627776,1099511627776,1099511627776,0]", "[0,0]") "}", 0, "\"a\"",
            "F32[1099511627776, 1099511627776, 1099511627776, 0]");
    refused("{" ENTRY("a", "U8", "[0,9223372036854775807,2]", "[0,0]") "}", 0, "\"a\"", "2^63");
    /* the largest count a U8 tensor may have fits, and then its bytes are not in the file */
    refused("{" ENTRY("a", "U8", "[9223372036854775807]", "[0,0]") "}", 0, "\"a\"", "9223372036854775807 bytes");
    /* the second of two tensors is the bad one */
    refused("{" ENTRY("ok", "F32", "[1]", "[0,4]") "," ENTRY("big", "I32", "[3037000500,3037000500]", "[4,4]") "}", 4,
            "\"big\"", "I32[3037000500, 3037000500]");
    kt_scratch_remove();
}

KT_TEST(checkpoint_shapes, bad_sizes_and_axes_are_refused) {
    refused("{" ENTRY("a", "F32", "[-1]", "[0,0]") "}", 0, "\"a\"", "-1");
    refused("{" ENTRY("a", "F32", "[2,-3]", "[0,0]") "}", 0, "\"a\"", "axis 1");
    refused("{" ENTRY("a", "F32", "[-9223372036854775808]", "[0,0]") "}", 0, "\"a\"", "not a size");
    refused("{" ENTRY("a", "F32", "[2.5]", "[0,8]") "}", 8, "\"a\"", "not a size");
    refused("{" ENTRY("a", "F32", "[1e30]", "[0,8]") "}", 8, "\"a\"", "not a size");
    refused("{" ENTRY("a", "F32", "[\"2\"]", "[0,8]") "}", 8, "\"a\"", "not a size");
    /* beyond int64: the JSON number itself is refused */
    refused("{" ENTRY("a", "U8", "[9223372036854775808]", "[0,0]") "}", 0, "9223372036854775808", "2^63");
    refused("{" ENTRY("a", "U8", "[1]", "[0,18446744073709551616]") "}", 1, "18446744073709551616", "2^63");
    /* more axes than kiln tensors have, empty or not */
    refused("{" ENTRY("a", "U8", "[1,1,1,1,1,1,1,1,1]", "[0,1]") "}", 1, "\"a\"", "9 dimensions");
    refused("{" ENTRY("a", "U8", "[0,1,1,1,1,1,1,1,1,1,1,1]", "[0,0]") "}", 0, "\"a\"", "12 dimensions");
    refused("{" ENTRY("a", "U8", "[4,4]", "[0,16]") "," ENTRY("b", "U8", "[1,1,1,1,1,1,1,1,1]", "[16,17]") "}", 17,
            "\"b\"", "dimensions");
    kt_scratch_remove();
}

KT_TEST(checkpoint_shapes, offsets_must_match_the_checked_sizes_exactly) {
    refused("{" ENTRY("a", "F32", "[2]", "[0,12]") "}", 12, "\"a\"", "F32[2] (8 bytes)");
    refused("{" ENTRY("a", "F32", "[3]", "[0,8]") "}", 8, "\"a\"", "span 8 bytes");
    refused("{" ENTRY("a", "F32", "[0]", "[0,4]") "}", 4, "\"a\"", "F32[0] (0 bytes)");
    refused("{" ENTRY("a", "U8", "[4294967296,0]", "[0,4]") "}", 4, "\"a\"", "span 4 bytes");
    /* overlapping, backwards, beyond the data area, beyond int64, a gap */
    refused("{" ENTRY("a", "F32", "[2]", "[0,8]") "," ENTRY("b", "F32", "[2]", "[4,12]") "}", 12, "\"b\"", "overlaps");
    refused("{" ENTRY("a", "F32", "[1]", "[0,4]") "," ENTRY("b", "F32", "[1]", "[0,4]") "}", 8, "\"b\"", "overlaps");
    refused("{" ENTRY("a", "F32", "[2]", "[0,8]") "," ENTRY("e", "U8", "[0]", "[4,4]") "}", 8, "\"e\"", "overlaps");
    refused("{" ENTRY("a", "F32", "[0]", "[8,4]") "}", 8, "\"a\"", "end before");
    refused("{" ENTRY("a", "F32", "[2]", "[4,12]") "}", 8, "\"a\"", "past the end");
    refused("{" ENTRY("a", "U8", "[9223372036854775807]", "[0,9223372036854775807]") "}", 8, "\"a\"", "past the end");
    refused("{" ENTRY("a", "U8", "[1]", "[9223372036854775806,9223372036854775807]") "}", 8, "\"a\"", "past the end");
    refused("{" ENTRY("a", "F32", "[1]", "[4,8]") "}", 8, "\"a\"", "belong to no tensor");
    refused("{" ENTRY("a", "F32", "[1]", "[0,4]") "}", 5, "cover 4 bytes", NULL);
    refused("{" ENTRY("a", "F32", "[1]", "[0,-4]") "}", 4, "\"a\"", "data_offsets");
    kt_scratch_remove();
}

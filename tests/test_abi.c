/* kiln_abi_sizeof / kiln_abi_offsetof (core/abi.c), which the Python bindings check their
 * ctypes mirrors against at import: the tables must answer what this compiler says of
 * the public structs, and unknown names must answer 0 and (size_t)-1. */
#include <stddef.h>

#include "kiln.h"
#include "support/kiln_test.h"

TestSuite(abi, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(abi, sizes_and_offsets_match_the_compiler) {
    cr_expect_eq(kiln_abi_sizeof("kiln_conv2d_params"), sizeof(kiln_conv2d_params));
    cr_expect_eq(kiln_abi_offsetof("kiln_conv2d_params", "dilation"), offsetof(kiln_conv2d_params, dilation));
    cr_expect_eq(kiln_abi_sizeof("kiln_pool2d_params"), sizeof(kiln_pool2d_params));
    cr_expect_eq(kiln_abi_sizeof("kiln_pool_stats"), sizeof(kiln_pool_stats));
    cr_expect_eq(kiln_abi_offsetof("kiln_pool_stats", "peak_in_use"), offsetof(kiln_pool_stats, peak_in_use));
    cr_expect_eq(kiln_abi_sizeof("kiln_device"), sizeof(kiln_device));
    cr_expect_eq(kiln_abi_sizeof("kiln_safetensors_entry"), sizeof(kiln_safetensors_entry));
    cr_expect_eq(kiln_abi_offsetof("kiln_adam_options", "amsgrad"), offsetof(kiln_adam_options, amsgrad));
}

KT_TEST(abi, unknown_names_answer_zero_and_minus_one) {
    cr_expect_eq(kiln_abi_sizeof("kiln_no_such_struct"), 0);
    cr_expect_eq(kiln_abi_sizeof(NULL), 0);
    cr_expect_eq(kiln_abi_offsetof("kiln_conv2d_params", "no_such_field"), (size_t)-1);
    cr_expect_eq(kiln_abi_offsetof(NULL, NULL), (size_t)-1);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
}

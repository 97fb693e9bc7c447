/* kiln_module_to: moving a model between devices. Without a GPU only the refusal
 * path runs here; with one, the moved model must compute what the CPU one does. */
#include "support/kiln_test.h"

TestSuite(module_device, .init = kiln_test_setup, .fini = kiln_test_teardown);

static kiln_module *small_net(void) {
    kiln_module *net = kiln_sequential_create();
    kiln_sequential_append(net, kiln_conv2d_create(3, 4, 3, 1, 1, true, KILN_F32));
    kiln_sequential_append(net, kiln_batch_norm2d_create(4, KILN_F32));
    kiln_sequential_append(net, kiln_relu_create());
    return net;
}

KT_TEST(module_device, missing_device_is_refused_and_the_model_still_works) {
    kiln_module *net = small_net();
    kiln_device dev = KILN_CUDA(kiln_cuda_device_count()); /* one past the last device */
    cr_expect_eq(kiln_module_to(net, dev), KILN_STATUS_NO_DEVICE);
    kt_expect_error(KILN_STATUS_NO_DEVICE, "cuda");
    kiln_tensor *y = kiln_module_forward(net, kiln_tensor_randn(4, (int64_t[]){2, 3, 5, 5}, 0, 1, KILN_F32, KILN_CPU));
    KT_EXPECT_SHAPE(y, 4, 2, 4, 5, 5);
    kiln_module_free(net);
}

KT_TEST(module_device, same_device_is_a_no_op_and_children_are_refused) {
    kiln_module *net = small_net();
    kiln_tensor *w = kiln_module_get(net, "0.weight");
    cr_assert_eq(kiln_module_finalize(net), KILN_STATUS_OK); /* packs the arena first */
    void *before = kiln_tensor_data(w);
    cr_expect_eq(kiln_module_to(net, KILN_CPU), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_tensor_data(w), before);
    cr_expect_eq(kiln_module_to(kiln_module_child(net, "0"), KILN_CPU), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "root");
    kiln_module_free(net);
}

KT_TEST(module_device, cuda_model_matches_cpu) {
    if (kiln_cuda_device_count() == 0) cr_skip_test("no CUDA device here: kiln_module_to(cuda) not run on a GPU");
    kiln_manual_seed(3);
    kiln_module *a = small_net(), *b = small_net();
    /* same weights in both */
    for (int i = 0; i < kiln_module_num_state(a); i++)
        kiln_tensor_copy_(kiln_module_state(b, i, NULL, NULL), kiln_module_state(a, i, NULL, NULL));
    cr_assert_eq(kiln_module_to(b, KILN_CUDA(0)), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *x = kiln_tensor_randn(4, (int64_t[]){2, 3, 9, 7}, 0, 1, KILN_F32, KILN_CPU);
    kiln_tensor *ya = kiln_module_forward(a, x);
    kiln_tensor *yb = kiln_tensor_to(kiln_module_forward(b, kiln_tensor_to(x, KILN_CUDA(0))), KILN_CPU);
    double *va = kt_values(ya);
    kt_expect_values(yb, va, kiln_tensor_numel(ya), 1e-5, 1e-5);
    free(va);
    /* running statistics moved and updated on the device */
    kiln_tensor *rm = kiln_tensor_to(kiln_module_get(b, "1.running_mean"), KILN_CPU);
    double *ra = kt_values(kiln_module_get(a, "1.running_mean"));
    kt_expect_values(rm, ra, 4, 1e-6, 1e-5);
    free(ra);
    kiln_module_free(a);
    kiln_module_free(b);
}

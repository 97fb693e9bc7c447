/* The module layer: state_dict names, order and sizes as torch gives them for the
 * same nested tree, parameter counts, Sequential and custom forwards, the two
 * contiguous arenas (parameters and gradients are views of one storage each,
 * backward lands in them, zero-grad clears them, repacking keeps pointers),
 * train/eval propagation, lifetime beyond scopes, initialisers and errors. */
#include "support/kiln_test.h"
#include "fixtures/nn_module_names.h"

#include <stdlib.h>

TestSuite(module, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Block of gen_nn.py: enc1 = Sequential(Linear(3,4), BatchNorm2d(4), ReLU()), drop =
 * Dropout(0.5), head = Sequential(Flatten(), Linear(4,2,bias=False), Sigmoid()). */
static kiln_module *make_block(kiln_dtype dt) {
    kiln_module *root = kiln_module_create("Block", NULL, NULL, NULL);
    kiln_module *enc1 = kiln_sequential_create(), *head = kiln_sequential_create();
    cr_assert_eq(kiln_sequential_append(enc1, kiln_linear_create(3, 4, true, dt)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(enc1, kiln_batch_norm2d_create(4, dt)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(enc1, kiln_relu_create()), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(head, kiln_flatten_create(1, -1)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(head, kiln_linear_create(4, 2, false, dt)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(head, kiln_sigmoid_create()), KILN_STATUS_OK);
    cr_assert_eq(kiln_module_add(root, "enc1", enc1), KILN_STATUS_OK);
    cr_assert_eq(kiln_module_add(root, "drop", kiln_dropout_create(0.5)), KILN_STATUS_OK);
    cr_assert_eq(kiln_module_add(root, "head", head), KILN_STATUS_OK, "%s", kiln_last_error());
    return root;
}

KT_TEST(module, state_dict_names_match_torch) {
    kiln_module *m = make_block(KILN_F32);
    cr_assert_eq(kiln_module_num_state(m), N_OF(FX_STATE));
    for (int i = 0; i < N_OF(FX_STATE); i++) {
        const char *name;
        bool is_buffer;
        kiln_tensor *t = kiln_module_state(m, i, &name, &is_buffer);
        cr_assert(t);
        cr_expect_str_eq(name, FX_STATE[i].name);
        cr_expect_eq(is_buffer, FX_STATE[i].is_buffer != 0, "%s", name);
        cr_expect_eq(kiln_tensor_numel(t), FX_STATE[i].numel, "%s", name);
        cr_expect_eq(kiln_module_get(m, name), t);
    }
    cr_expect_eq(kiln_module_num_parameters(m), FX_NUM_PARAMS);
    cr_expect_eq(kiln_module_parameter_count(m), FX_PARAM_COUNT);
    cr_expect_eq(kiln_module_num_buffers(m), N_OF(FX_STATE) - FX_NUM_PARAMS);
    const char *name;
    kiln_module_parameter(m, 4, &name);
    cr_expect_str_eq(name, "head.1.weight");
    kiln_module_buffer(m, 2, &name);
    cr_expect_str_eq(name, "enc1.1.num_batches_tracked");
    /* names relative to a subtree, as torch's child.state_dict() */
    kiln_module *enc1 = kiln_module_child(m, "enc1");
    kiln_module_parameter(enc1, 0, &name);
    cr_expect_str_eq(name, "0.weight");
    char path[64];
    cr_expect_str_eq(kiln_module_path(kiln_module_child(m, "enc1.1"), path, sizeof path), "enc1.1");
    cr_expect_str_eq(kiln_module_type(kiln_module_child(m, "enc1.1")), "BatchNorm2d");
    /* weight layout as torch: (out_features, in_features) */
    KT_EXPECT_SHAPE(kiln_module_get(m, "enc1.0.weight"), 2, 4, 3);
    kiln_module_free(m);
}

KT_TEST(module, sequential_forward_is_the_composition) {
    kiln_module *mlp = kiln_sequential_create();
    kiln_sequential_append(mlp, kiln_linear_create(4, 8, true, KILN_F64));
    kiln_sequential_append(mlp, kiln_tanh_create());
    kiln_sequential_append(mlp, kiln_linear_create(8, 3, true, KILN_F64));
    kiln_tensor *x = kiln_tensor_randn(2, (int64_t[]){5, 4}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *y = kiln_module_forward(mlp, x);
    kiln_tensor *ref = kiln_linear(kiln_tanh(kiln_linear(x, kiln_module_get(mlp, "0.weight"),
                                                         kiln_module_get(mlp, "0.bias"))),
                                   kiln_module_get(mlp, "2.weight"), kiln_module_get(mlp, "2.bias"));
    double *r = kt_values(ref);
    kt_expect_values(y, r, 15, 1e-14, 0);
    free(r);
    cr_expect_eq(kiln_module_parameter_count(mlp), 4 * 8 + 8 + 8 * 3 + 3);
    kiln_module_free(mlp);
}

/* A user module: its own parameter plus a child; forward = child(x) * scale. */
static kiln_tensor *scaled_forward(kiln_module *self, kiln_tensor *x) {
    kiln_tensor *h = kiln_module_forward(kiln_module_child(self, "body"), x);
    return kiln_mul(h, kiln_module_get(self, "scale"));
}

typedef struct {
    int freed;
} user_ctx;
static void user_ctx_free(void *p) { ((user_ctx *)p)->freed++; }

KT_TEST(module, custom_module_with_parameters_and_children) {
    user_ctx uc = {0};
    kiln_module *net = kiln_module_create("Net", NULL, NULL, NULL);
    kiln_module *blk = kiln_module_create("Scaled", scaled_forward, &uc, user_ctx_free);
    kiln_tensor *scale = kiln_module_register_parameter(blk, "scale", KT_F64(1, KT_SHAPE(2), {2, -1}));
    cr_assert(scale, "%s", kiln_last_error());
    cr_assert_eq(kiln_module_add(blk, "body", kiln_linear_create(3, 2, true, KILN_F64)), KILN_STATUS_OK);
    cr_assert_eq(kiln_module_add(net, "enc1", blk), KILN_STATUS_OK);
    cr_expect_eq(kiln_module_ctx(blk), &uc);
    const char *names[3];
    for (int i = 0; i < 3; i++) kiln_module_parameter(net, i, &names[i]);
    cr_expect_str_eq(names[0], "enc1.scale");
    cr_expect_str_eq(names[1], "enc1.body.weight");
    cr_expect_str_eq(names[2], "enc1.body.bias");
    kiln_tensor *x = KT_F64(2, KT_SHAPE(1, 3), {1, 2, 3});
    kiln_tensor *y = kiln_module_forward(blk, x);
    kiln_tensor *lin = kiln_linear(x, kiln_module_get(net, "enc1.body.weight"), kiln_module_get(net, "enc1.body.bias"));
    double *l = kt_values(lin);
    KT_EXPECT(y, 1e-14, 0, {2 * l[0], -l[1]});
    free(l);
    kiln_module_free(net);
    cr_expect_eq(uc.freed, 1);
}

KT_TEST(module, arenas_are_contiguous_and_hold_the_gradients) {
    kiln_module *m = make_block(KILN_F32);
    kiln_tensor *flat = kiln_module_flat_parameters(m), *gflat = kiln_module_flat_gradients(m);
    cr_assert(flat && gflat, "%s", kiln_last_error());
    cr_expect_eq(kiln_tensor_numel(flat), FX_PARAM_COUNT);
    cr_expect_eq(kiln_tensor_numel(gflat), FX_PARAM_COUNT);
    char *base = kiln_tensor_data(flat), *gbase = kiln_tensor_data(gflat);
    int64_t off = 0;
    for (int i = 0; i < kiln_module_num_parameters(m); i++) {
        const char *name;
        kiln_tensor *p = kiln_module_parameter(m, i, &name);
        kiln_tensor *g = kiln_tensor_grad(p);
        cr_assert(g, "%s has no gradient view", name);
        cr_expect(kiln_tensor_is_contiguous(p) && kiln_tensor_is_contiguous(g));
        cr_expect_eq((char *)kiln_tensor_data(p), base + off * 4, "%s is not at its arena slice", name);
        cr_expect_eq((char *)kiln_tensor_data(g), gbase + off * 4, "grad of %s is not at its arena slice", name);
        off += kiln_tensor_numel(p);
    }
    /* buffers stay out of the parameter arena */
    char *rm = kiln_tensor_data(kiln_module_get(m, "enc1.1.running_mean"));
    cr_expect(rm < base || rm >= base + off * 4);

    /* one training step: x (2, 3) -> Linear -> as (2, 4, 1, 1) for BatchNorm2d -> head */
    kiln_tensor *x = kiln_tensor_randn(2, (int64_t[]){2, 3}, 0, 1, KILN_F32, KILN_CPU);
    kiln_module *enc1 = kiln_module_child(m, "enc1");
    kiln_tensor *h = kiln_module_forward(kiln_module_child(enc1, "0"), x);
    h = kiln_module_forward(kiln_module_child(enc1, "1"), kiln_reshape(h, 4, (int64_t[]){2, 4, 1, 1}));
    h = kiln_module_forward(kiln_module_child(m, "head"), kiln_relu(h));
    cr_assert_eq(kiln_backward(kiln_sum_all(h), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double *gv = kt_values(gflat);
    int nonzero = 0;
    for (int64_t i = 0; i < off; i++) nonzero += gv[i] != 0;
    free(gv);
    cr_expect(nonzero > off / 2, "backward left the gradient arena mostly empty (%d of %lld)", nonzero, (long long)off);
    /* the Linear weight's .grad is the arena slice */
    kiln_tensor *w = kiln_module_get(m, "head.1.weight");
    cr_expect_eq((char *)kiln_tensor_data(kiln_tensor_grad(w)), gbase + (FX_PARAM_COUNT - 8) * 4);
    cr_assert_eq(kiln_module_zero_grad(m), KILN_STATUS_OK);
    gv = kt_values(gflat);
    for (int64_t i = 0; i < off; i++) cr_expect_eq(gv[i], 0.0, "gradient %lld not zeroed", (long long)i);
    free(gv);
    kiln_module_free(m);
}

KT_TEST(module, repacking_keeps_pointers_and_values) {
    kiln_module *m = kiln_sequential_create();
    kiln_sequential_append(m, kiln_linear_create(2, 2, true, KILN_F32));
    kiln_tensor *flat = kiln_module_flat_parameters(m);
    kiln_tensor *w = kiln_module_get(m, "0.weight");
    double *before = kt_values(w);
    cr_assert_eq(kiln_sequential_append(m, kiln_linear_create(2, 1, false, KILN_F32)), KILN_STATUS_OK);
    cr_expect_eq(kiln_module_flat_parameters(m), flat);
    cr_expect_eq(kiln_tensor_numel(flat), 4 + 2 + 2);
    cr_expect_eq(kiln_module_get(m, "0.weight"), w);
    cr_expect_eq((char *)kiln_tensor_data(w), (char *)kiln_tensor_data(flat));
    cr_expect_eq((char *)kiln_tensor_data(kiln_module_get(m, "1.weight")), (char *)kiln_tensor_data(flat) + 6 * 4);
    kt_expect_values(w, before, 4, 0, 0);
    free(before);
    kiln_module_free(m);
}

KT_TEST(module, train_eval_propagates) {
    kiln_module *m = make_block(KILN_F32);
    cr_expect(kiln_module_is_training(kiln_module_child(m, "enc1.1")));
    kiln_module_train(m, false);
    cr_expect(!kiln_module_is_training(m));
    cr_expect(!kiln_module_is_training(kiln_module_child(m, "enc1.1")));
    cr_expect(!kiln_module_is_training(kiln_module_child(m, "drop")));
    kiln_module_train(m, true);
    cr_expect(kiln_module_is_training(kiln_module_child(m, "head.2")));
    /* a child added to an eval-mode parent takes its mode */
    kiln_module_train(m, false);
    kiln_module_add(m, "extra", kiln_relu_create());
    cr_expect(!kiln_module_is_training(kiln_module_child(m, "extra")));
    kiln_module_free(m);
}

KT_TEST(module, outlives_scopes_and_frees_without_leaks) {
    size_t live0 = kiln_memory_stats(KILN_CPU).in_use;
    kiln_scope *s = kiln_scope_begin();
    kiln_module *m = kiln_sequential_create();
    kiln_sequential_append(m, kiln_linear_create(3, 5, true, KILN_F32));
    kiln_sequential_append(m, kiln_batch_norm2d_create(5, KILN_F32));
    kiln_scope_end(s);
    /* parameters, buffers and arenas survive the scope they were created in */
    for (int step = 0; step < 2; step++) {
        kiln_scope *st = kiln_scope_begin();
        kiln_tensor *h = kiln_module_forward(kiln_module_child(m, "0"), kiln_tensor_randn(2, (int64_t[]){4, 3}, 0, 1,
                                                                                         KILN_F32, KILN_CPU));
        h = kiln_module_forward(kiln_module_child(m, "1"), kiln_reshape(h, 4, (int64_t[]){4, 5, 1, 1}));
        cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(h, h)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_scope_end(st);
    }
    cr_expect_eq(kiln_module_zero_grad(m), KILN_STATUS_OK);
    cr_expect(kiln_memory_stats(KILN_CPU).in_use > live0);
    kiln_module_free(m);
    cr_expect_eq(kiln_memory_stats(KILN_CPU).in_use, live0, "module free left %zu bytes live",
                 kiln_memory_stats(KILN_CPU).in_use - live0);
}

KT_TEST(module, initialisers) {
    /* Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias */
    kiln_module *lin = kiln_linear_create(100, 50, true, KILN_F64);
    for (int k = 0; k < 2; k++) {
        kiln_tensor *t = kiln_module_get(lin, k ? "bias" : "weight");
        double *v = kt_values(t), mx = 0;
        for (int64_t i = 0; i < kiln_tensor_numel(t); i++) mx = fmax(mx, fabs(v[i]));
        free(v);
        cr_expect(mx <= 0.1 && mx > 0.09, "%s: max |value| %g, bound 0.1", k ? "bias" : "weight", mx);
    }
    kiln_module_free(lin);
    /* std of each initialiser on a (256, 128, 3, 3) weight: fan_in 1152, fan_out 2304 */
    const int64_t shape[4] = {256, 128, 3, 3};
    kiln_tensor *w = kiln_tensor_empty(4, shape, KILN_F32, KILN_CPU);
    struct { int kind; double std; } cases[] = {
        {0, sqrt(2.0) / sqrt(1152.0)},               /* kaiming_normal, relu, fan_in */
        {1, sqrt(2.0) / sqrt(1152.0)},               /* kaiming_uniform, relu, fan_in */
        {2, 1.0 * sqrt(2.0 / (1152.0 + 2304.0))},    /* xavier_normal */
        {3, 1.0 * sqrt(2.0 / (1152.0 + 2304.0))},    /* xavier_uniform */
        {4, sqrt(2.0) / sqrt(2304.0)},               /* kaiming_normal, fan_out */
    };
    for (int c = 0; c < 5; c++) {
        kiln_status st = cases[c].kind == 0   ? kiln_init_kaiming_normal(w, 0, KILN_FAN_IN, KILN_NONLINEARITY_RELU)
                         : cases[c].kind == 1 ? kiln_init_kaiming_uniform(w, 0, KILN_FAN_IN, KILN_NONLINEARITY_RELU)
                         : cases[c].kind == 2 ? kiln_init_xavier_normal(w, 1.0)
                         : cases[c].kind == 3 ? kiln_init_xavier_uniform(w, 1.0)
                                              : kiln_init_kaiming_normal(w, 0, KILN_FAN_OUT, KILN_NONLINEARITY_RELU);
        cr_assert_eq(st, KILN_STATUS_OK, "%s", kiln_last_error());
        double *v = kt_values(w), s = 0, s2 = 0;
        int64_t n = kiln_tensor_numel(w);
        for (int64_t i = 0; i < n; i++) {
            s += v[i];
            s2 += v[i] * v[i];
        }
        free(v);
        double mean = s / n, sd = sqrt(s2 / n - mean * mean);
        /* n = 294912 draws: the sample sd is within 1% of the true one */
        cr_expect(fabs(sd / cases[c].std - 1) < 0.01, "case %d: sd %g, expected %g", c, sd, cases[c].std);
        cr_expect(fabs(mean) < 0.01 * cases[c].std * 10, "case %d: mean %g", c, mean);
    }
    cr_expect_eq(kiln_init_gain(KILN_NONLINEARITY_LEAKY_RELU, sqrt(5.0)), sqrt(1.0 / 3.0));
    cr_expect_eq(kiln_init_gain(KILN_NONLINEARITY_TANH, 0), 5.0 / 3.0);
    /* same seed, same values */
    kiln_tensor *a = kiln_tensor_empty(2, (int64_t[]){4, 4}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_empty(2, (int64_t[]){4, 4}, KILN_F32, KILN_CPU);
    kiln_manual_seed(3);
    kiln_init_xavier_uniform(a, 1);
    kiln_manual_seed(3);
    kiln_init_xavier_uniform(b, 1);
    double *av = kt_values(a);
    kt_expect_values(b, av, 16, 0, 0);
    free(av);
    cr_expect_neq(kiln_init_kaiming_uniform(KT_F32(1, KT_SHAPE(3), {0, 0, 0}), 0, KILN_FAN_IN,
                                            KILN_NONLINEARITY_RELU), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_SHAPE, "fewer than 2 dimensions");
}

KT_TEST(module, forward_errors_name_the_module) {
    kiln_module *m = make_block(KILN_F32);
    cr_expect_null(kiln_module_forward(kiln_module_child(m, "enc1"), kiln_tensor_zeros(2, (int64_t[]){2, 5}, KILN_F32,
                                                                                       KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "module 'enc1.0' (Linear): input [2, 5] has 5 features");
    cr_expect_null(kiln_module_forward(m, kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_STATE, "root module (Block) has no forward");
    cr_expect_null(kiln_module_forward(kiln_module_child(m, "enc1"), NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "input of module 'enc1' (Sequential) is NULL");
    kiln_module_free(m);
}

KT_TEST(module, structural_errors) {
    kiln_module *m = make_block(KILN_F32);
    /* duplicate and dotted names; the rejected child is freed (no leak at teardown) */
    cr_expect_eq(kiln_module_add(m, "enc1", kiln_relu_create()), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "already has a parameter, buffer or child named 'enc1'");
    cr_expect_eq(kiln_module_add(m, "a.b", kiln_linear_create(2, 2, true, KILN_F32)), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "contain no '.'");
    cr_expect_null(kiln_module_register_parameter(kiln_module_child(m, "enc1.0"), "weight",
                                                  KT_F32(1, KT_SHAPE(1), {0})));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "module 'enc1.0' (Linear) already has");
    cr_expect_null(kiln_module_register_parameter(m, "idx", kiln_tensor_zeros(1, (int64_t[]){2}, KILN_I64, KILN_CPU)));
    kt_expect_error(KILN_STATUS_DTYPE, "parameters are f32 or f64");
    /* a child cannot be added twice, nor be freed on its own, nor form a cycle */
    kiln_module *enc1 = kiln_module_child(m, "enc1");
    cr_expect_eq(kiln_module_add(m, "again", enc1), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "already a child");
    kiln_module_free(enc1);
    kt_expect_error(KILN_STATUS_STATE, "free the root");
    cr_expect_eq(kiln_module_add(enc1, "loop", m), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "cycle");
    /* a NULL child (failed creation) is reported, not crashed on */
    cr_expect_eq(kiln_module_add(m, "bad", kiln_linear_create(-1, 2, true, KILN_F32)), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "in_features -1");
    cr_expect_null(kiln_module_get(m, "enc1.9.weight"));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "no parameter or buffer named 'enc1.9.weight'");
    cr_expect_null(kiln_module_child(m, "enc1.7"));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "no child '7'");
    /* arenas belong to the root; a used root cannot become a child */
    cr_expect_null(kiln_module_flat_parameters(enc1));
    kt_expect_error(KILN_STATUS_STATE, "not a root");
    cr_assert_eq(kiln_module_finalize(m), KILN_STATUS_OK);
    kiln_module *outer = kiln_sequential_create();
    cr_expect_eq(kiln_sequential_append(outer, m), KILN_STATUS_STATE); /* m is freed with the failure */
    kt_expect_error(KILN_STATUS_STATE, "arena was already built");
    kiln_module_free(outer);
    /* mixed dtypes cannot share an arena */
    kiln_module *mix = kiln_sequential_create();
    kiln_sequential_append(mix, kiln_linear_create(2, 2, true, KILN_F32));
    kiln_sequential_append(mix, kiln_linear_create(2, 2, true, KILN_F64));
    cr_expect_eq(kiln_module_finalize(mix), KILN_STATUS_DTYPE);
    kt_expect_error(KILN_STATUS_DTYPE, "'0.weight'");
    kiln_module_free(mix);
}

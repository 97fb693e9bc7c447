/* Shape ops: reshape (a view when the strides allow, else a copy; -1 inference),
 * permute/transpose, slice (negative indices, steps, clamping as Python), expand,
 * squeeze/unsqueeze/flatten, their sharing of storage and their backward through
 * the float64 gradient checker (eps 1e-6, tolerance 1e-7 + 1e-6*|numeric|). */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(views, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define GC(f, n, x) cr_expect(kt_gradcheck(f, NULL, n, x, 1e-6, 1e-7, 1e-6))

/* 0, 1, ..., n-1 reshaped to shape, f64. */
static kiln_tensor *iota(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    kiln_tensor *a = kiln_tensor_arange(0, (double)n, 1, KILN_F64, KILN_CPU);
    return kiln_reshape(a, ndim, shape);
}

/* ---- reshape -------------------------------------------------------------------------- */

KT_TEST(views, reshape_of_contiguous_is_a_view) {
    kiln_tensor *a = iota(2, SHAPE(2, 6));
    kiln_tensor *r = kiln_reshape(a, 3, SHAPE(3, 2, 2));
    KT_EXPECT_SHAPE(r, 3, 3, 2, 2);
    cr_expect_eq(kiln_tensor_data(r), kiln_tensor_data(a));
    kiln_tensor_fill(kiln_slice(r, 0, 1, 2, 1), -1); /* write through the view */
    KT_EXPECT(a, 0, 0, {0, 1, 2, 3, -1, -1, -1, -1, 8, 9, 10, 11});
    KT_EXPECT_SHAPE(kiln_reshape(a, 2, SHAPE(-1, 4)), 2, 3, 4);
    KT_EXPECT_SHAPE(kiln_reshape(a, 3, SHAPE(2, -1, 2)), 3, 2, 3, 2);
    KT_EXPECT_SHAPE(kiln_reshape(a, 1, SHAPE(-1)), 1, 12);
    KT_EXPECT_SHAPE(kiln_reshape(kiln_tensor_zeros(2, SHAPE(0, 3), KILN_F32, KILN_CPU), 2, SHAPE(3, -1)), 2, 3, 0);
    /* to and from 0-d */
    kiln_tensor *s = kiln_reshape(kiln_tensor_full(2, SHAPE(1, 1), 5, KILN_F32, KILN_CPU), 0, NULL);
    cr_expect_eq(kiln_tensor_ndim(s), 0);
    KT_EXPECT_SHAPE(kiln_reshape(s, 3, SHAPE(1, -1, 1)), 3, 1, 1, 1);
}

KT_TEST(views, reshape_of_strided_tensors_copies_only_when_it_must) {
    kiln_tensor *a = iota(2, SHAPE(2, 3));
    kiln_tensor *t = kiln_transpose(a, 0, 1); /* [3, 2], strides (1, 3) */
    kiln_tensor *flat = kiln_reshape(t, 1, SHAPE(6));
    KT_EXPECT(flat, 0, 0, {0, 3, 1, 4, 2, 5});
    cr_expect_neq(kiln_tensor_data(flat), kiln_tensor_data(a), "flattening a transpose must copy");
    /* adding or removing size-1 axes, or splitting one axis, stays a view */
    kiln_tensor *v = kiln_reshape(t, 3, SHAPE(3, 1, 2));
    cr_expect_eq(kiln_tensor_data(v), kiln_tensor_data(a));
    KT_EXPECT(v, 0, 0, {0, 3, 1, 4, 2, 5});
    kiln_tensor *b = iota(3, SHAPE(4, 3, 2));
    kiln_tensor *bt = kiln_permute(b, (int[]){1, 0, 2});   /* [3, 4, 2] */
    kiln_tensor *split = kiln_reshape(bt, 4, SHAPE(3, 2, 2, 2));
    cr_expect_eq(kiln_tensor_data(split), kiln_tensor_data(b), "splitting the permuted axis is a view");
    cr_expect_eq(kiln_tensor_stride(split, 0), 2);
    cr_expect_eq(kiln_tensor_stride(split, 1), 12);
    cr_expect_eq(kiln_tensor_stride(split, 2), 6);
    double *got = kt_values(split), *ref = kt_values(kiln_reshape(kiln_tensor_contiguous(bt), 4, SHAPE(3, 2, 2, 2)));
    for (int i = 0; i < 24; i++) cr_expect_eq(got[i], ref[i], "element %d", i);
    free(got);
    free(ref);
    /* an expanded tensor: merging the broadcast axis needs a copy, splitting one does not */
    kiln_tensor *e = kiln_expand(iota(2, SHAPE(1, 4)), 2, SHAPE(3, 4));
    kiln_tensor *ef = kiln_reshape(e, 1, SHAPE(12));
    KT_EXPECT(ef, 0, 0, {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3});
    kiln_tensor *es = kiln_reshape(e, 3, SHAPE(3, 2, 2));
    cr_expect_eq(kiln_tensor_stride(es, 0), 0);
    KT_EXPECT(es, 0, 0, {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3});
    /* a step slice cannot merge with its neighbour */
    kiln_tensor *sl = kiln_slice(iota(2, SHAPE(2, 6)), 1, 0, 6, 2);
    KT_EXPECT(kiln_reshape(sl, 1, SHAPE(-1)), 0, 0, {0, 2, 4, 6, 8, 10});
}

static kiln_tensor *f_reshape(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *t = kiln_transpose(x[0], 0, 2);                     /* [4, 3, 2] */
    kiln_tensor *r = kiln_reshape(t, 2, SHAPE(-1, 6));               /* copy: [4, 6] */
    kiln_tensor *v = kiln_reshape(x[0], 3, SHAPE(6, 2, 2));          /* view */
    return kiln_add(kiln_mul(r, r), kiln_reshape(kiln_exp(v), 2, SHAPE(4, 6)));
}

KT_TEST(views, reshape_backward) {
    kiln_tensor *x = kt_rand_input(3, SHAPE(2, 3, 4), -1, 1);
    GC(f_reshape, 1, &x);
}

/* ---- permute / transpose ------------------------------------------------------------------ */

KT_TEST(views, permute_and_transpose) {
    kiln_tensor *a = iota(3, SHAPE(2, 3, 4));
    kiln_tensor *p = kiln_permute(a, (int[]){2, 0, 1});
    KT_EXPECT_SHAPE(p, 3, 4, 2, 3);
    cr_expect_eq(kiln_tensor_data(p), kiln_tensor_data(a));
    /* p[i][j][k] = a[j][k][i] = 12j + 4k + i */
    double *v = kt_values(p);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 2; j++)
            for (int k = 0; k < 3; k++) cr_expect_eq(v[i * 6 + j * 3 + k], 12 * j + 4 * k + i);
    free(v);
    kiln_tensor *pn = kiln_permute(a, (int[]){-1, -3, -2});
    KT_EXPECT_SHAPE(pn, 3, 4, 2, 3);
    kiln_tensor *t = kiln_transpose(a, -1, 0);
    KT_EXPECT_SHAPE(t, 3, 4, 3, 2);
    cr_expect_eq(kiln_tensor_stride(t, 0), 1);
    cr_expect_eq(kiln_tensor_stride(t, 2), 12);
    KT_EXPECT_SHAPE(kiln_transpose(a, 1, 1), 3, 2, 3, 4);
    /* permute of a 0-d tensor is itself */
    kiln_tensor *s = kiln_permute(kiln_tensor_scalar(3, KILN_F32, KILN_CPU), NULL);
    cr_expect_eq(kiln_tensor_ndim(s), 0);
    cr_expect_null(kiln_permute(a, (int[]){0, 1, 3}));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "permute: axis 3");
}

static kiln_tensor *f_permute(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *p = kiln_permute(x[0], (int[]){1, 2, 0});           /* [3, 4, 2] */
    kiln_tensor *t = kiln_transpose(x[1], 0, 1);                     /* [3, 4] -> broadcast over the last */
    return kiln_mul(kiln_sigmoid(p), kiln_unsqueeze(t, -1));
}

KT_TEST(views, permute_transpose_backward) {
    kiln_tensor *x[2] = {kt_rand_input(3, SHAPE(2, 3, 4), -1, 1), kt_rand_input(2, SHAPE(4, 3), -1, 1)};
    GC(f_permute, 2, x);
}

/* ---- slice ------------------------------------------------------------------------------------ */

static void expect_slice(int64_t start, int64_t end, int64_t step, int n, const double *want) {
    kiln_tensor *a = kiln_tensor_arange(0, 10, 1, KILN_F32, KILN_CPU);
    kiln_tensor *s = kiln_slice(a, 0, start, end, step);
    cr_assert(s != NULL, "slice(%lld, %lld, %lld): %s", (long long)start, (long long)end, (long long)step,
              kiln_last_error());
    cr_expect_eq(kiln_tensor_numel(s), n, "slice(%lld, %lld, %lld) has %lld elements, Python gives %d",
                 (long long)start, (long long)end, (long long)step, (long long)kiln_tensor_numel(s), n);
    if (n && kiln_tensor_numel(s) == n) kt_expect_values(s, want, n, 0, 0);
}
#define SLICE(start, end, step, ...) \
    expect_slice(start, end, step, (int)(sizeof((double[]){0, __VA_ARGS__}) / sizeof(double)) - 1, \
                 (const double[]){0, __VA_ARGS__} + 1)
#define SLICE_EMPTY(start, end, step) expect_slice(start, end, step, 0, NULL)

KT_TEST(views, slice_follows_python) {
    SLICE(2, 8, 3, 2, 5);
    SLICE(0, 10, 4, 0, 4, 8);
    SLICE(1, 10, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9);
    SLICE(-3, 10, 1, 7, 8, 9);
    SLICE(-3, -1, 1, 7, 8);
    SLICE(0, -1, 4, 0, 4, 8);
    SLICE(-100, 3, 1, 0, 1, 2);         /* clamped at the start */
    SLICE(7, 1000000, 1, 7, 8, 9);      /* clamped at the end */
    SLICE(9, 10, 5, 9);
    SLICE_EMPTY(5, 2, 1);
    SLICE_EMPTY(10, 12, 1);
    SLICE_EMPTY(-1, -5, 1);
    SLICE_EMPTY(3, 3, 1);
    /* along an inner axis, with an offset into the storage */
    kiln_tensor *m = iota(2, SHAPE(3, 5));
    kiln_tensor *c = kiln_slice(m, 1, -4, 5, 2);
    KT_EXPECT_SHAPE(c, 2, 3, 2);
    KT_EXPECT(c, 0, 0, {1, 3, 6, 8, 11, 13});
    cr_expect_eq((double *)kiln_tensor_data(c), (double *)kiln_tensor_data(m) + 1);
    /* slicing a slice */
    KT_EXPECT(kiln_slice(kiln_slice(m, 0, 1, 3, 1), 1, 1, 4, 2), 0, 0, {6, 8, 11, 13});
}

static kiln_tensor *f_slice(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *a = kiln_slice(x[0], 1, 1, 7, 2);     /* [3, 3] columns 1, 3, 5 */
    kiln_tensor *b = kiln_slice(x[0], 0, -2, 100, 1);  /* [2, 7] last two rows, clamped end */
    kiln_tensor *c = kiln_slice(b, 1, -3, -1, 1);      /* [2, 2] */
    kiln_tensor *d = kiln_slice(a, 0, 0, 3, 2);        /* [2, 3] rows 0, 2 */
    return kiln_add(kiln_mul(d, d), kiln_sum(kiln_exp(c), 1, (int[]){1}, true));
}

KT_TEST(views, slice_backward) {
    kiln_tensor *x = kt_rand_input(2, SHAPE(3, 7), -1, 1);
    GC(f_slice, 1, &x);
    /* an empty slice passes a zero gradient */
    kiln_tensor *y = kt_rand_input(1, SHAPE(4), -1, 1);
    kiln_tensor *e = kiln_slice(y, 0, 3, 1, 1);
    kiln_tensor *loss = kiln_add(kiln_sum_all(e), kiln_sum_all(kiln_slice(y, 0, 0, 4, 3)));
    cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(y), 0, 0, {1, 0, 0, 1});
}

/* ---- expand ------------------------------------------------------------------------------------ */

KT_TEST(views, expand) {
    kiln_tensor *a = KT_F32(2, KT_SHAPE(3, 1), {1, 2, 3});
    kiln_tensor *e = kiln_expand(a, 2, SHAPE(3, 4));
    KT_EXPECT(e, 0, 0, {1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
    cr_expect_eq(kiln_tensor_data(e), kiln_tensor_data(a));
    KT_EXPECT_SHAPE(kiln_expand(a, 2, SHAPE(-1, 2)), 2, 3, 2);
    kiln_tensor *l = kiln_expand(a, 3, SHAPE(2, 3, 4));
    KT_EXPECT_SHAPE(l, 3, 2, 3, 4);
    cr_expect_eq(kiln_tensor_stride(l, 0), 0);
    KT_EXPECT_SHAPE(kiln_expand(a, 2, SHAPE(3, 0)), 2, 3, 0);
    KT_EXPECT(kiln_expand(kiln_tensor_scalar(7, KILN_F64, KILN_CPU), 2, SHAPE(2, 2)), 0, 0, {7, 7, 7, 7});
    cr_expect_null(kiln_expand(a, 3, SHAPE(-1, 3, 4)));
    kt_expect_error(KILN_STATUS_SHAPE, "expand");
}

static kiln_tensor *f_expand(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *e = kiln_expand(x[0], 3, SHAPE(2, 3, 4));             /* [3, 1] -> [2, 3, 4] */
    kiln_tensor *s = kiln_expand(x[1], 2, SHAPE(3, 4));                /* 0-d -> [3, 4] */
    return kiln_mul(kiln_tanh(e), s);
}

KT_TEST(views, expand_backward) {
    kiln_tensor *x[2] = {kt_rand_input(2, SHAPE(3, 1), -1, 1), kt_rand_input(0, NULL, -1, 1)};
    GC(f_expand, 2, x);
}

/* ---- squeeze, unsqueeze, flatten --------------------------------------------------------------- */

KT_TEST(views, squeeze_unsqueeze_flatten) {
    kiln_tensor *a = iota(4, SHAPE(1, 3, 1, 2));
    KT_EXPECT_SHAPE(kiln_squeeze(a, KILN_ALL_AXES), 2, 3, 2);
    KT_EXPECT_SHAPE(kiln_squeeze(a, 0), 3, 3, 1, 2);
    KT_EXPECT_SHAPE(kiln_squeeze(a, -2), 3, 1, 3, 2);
    cr_expect_eq(kiln_tensor_data(kiln_squeeze(a, KILN_ALL_AXES)), kiln_tensor_data(a));
    kiln_tensor *b = iota(2, SHAPE(2, 3));
    KT_EXPECT_SHAPE(kiln_unsqueeze(b, 0), 3, 1, 2, 3);
    KT_EXPECT_SHAPE(kiln_unsqueeze(b, 1), 3, 2, 1, 3);
    KT_EXPECT_SHAPE(kiln_unsqueeze(b, 2), 3, 2, 3, 1);
    KT_EXPECT_SHAPE(kiln_unsqueeze(b, -1), 3, 2, 3, 1);
    KT_EXPECT_SHAPE(kiln_unsqueeze(b, -3), 3, 1, 2, 3);
    KT_EXPECT_SHAPE(kiln_unsqueeze(kiln_tensor_scalar(1, KILN_F32, KILN_CPU), 0), 1, 1);
    /* unsqueeze of a transposed tensor keeps it a view */
    kiln_tensor *bt = kiln_transpose(b, 0, 1);
    kiln_tensor *u = kiln_unsqueeze(bt, 1);
    cr_expect_eq(kiln_tensor_data(u), kiln_tensor_data(b));
    KT_EXPECT(u, 0, 0, {0, 3, 1, 4, 2, 5});
    kiln_tensor *c = iota(4, SHAPE(2, 3, 4, 5));
    KT_EXPECT_SHAPE(kiln_flatten(c, 0, -1), 1, 120);
    KT_EXPECT_SHAPE(kiln_flatten(c, 1, 2), 3, 2, 12, 5);
    KT_EXPECT_SHAPE(kiln_flatten(c, -2, -1), 3, 2, 3, 20);
    KT_EXPECT_SHAPE(kiln_flatten(c, 2, 2), 4, 2, 3, 4, 5);
    KT_EXPECT_SHAPE(kiln_flatten(kiln_tensor_scalar(1, KILN_F32, KILN_CPU), 0, -1), 1, 1);
    KT_EXPECT(kiln_flatten(bt, 0, 1), 0, 0, {0, 3, 1, 4, 2, 5});
    cr_expect_null(kiln_unsqueeze(b, 3));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "unsqueeze");
    cr_expect_null(kiln_unsqueeze(iota(8, SHAPE(1, 1, 1, 1, 1, 1, 1, 2)), 0));
    kt_expect_error(KILN_STATUS_SHAPE, "already has 8 dimensions");
}

/* torch.squeeze(dim) on an axis not of size 1, or on a 0-d tensor, is a view of the
 * same shape (torch 1.13: torch.randn(2, 3).squeeze(1) is (2, 3), torch.tensor(1.).squeeze(0)
 * is 0-d, squeeze(-3) of a 2-d tensor is out of range). */
KT_TEST(views, squeeze_axis_not_one_is_a_view) {
    kiln_tensor *a = iota(2, SHAPE(2, 3));
    kiln_tensor *s = kiln_squeeze(a, 1);
    KT_EXPECT_SHAPE(s, 2, 2, 3);
    cr_expect_eq(kiln_tensor_data(s), kiln_tensor_data(a));
    cr_expect_neq(s, a);
    KT_EXPECT(s, 0, 0, {0, 1, 2, 3, 4, 5});
    KT_EXPECT_SHAPE(kiln_squeeze(a, -2), 2, 2, 3);
    /* transposed input stays a view with its strides */
    kiln_tensor *t = kiln_squeeze(kiln_transpose(a, 0, 1), 0);
    KT_EXPECT(t, 0, 0, {0, 3, 1, 4, 2, 5});
    cr_expect_eq(kiln_tensor_data(t), kiln_tensor_data(a));
    kiln_tensor *z = kiln_tensor_scalar(2.5, KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_tensor_ndim(kiln_squeeze(z, 0)), 0);
    cr_expect_eq(kiln_tensor_ndim(kiln_squeeze(z, -1)), 0);
    cr_expect_float_eq(kiln_tensor_item(kiln_squeeze(z, 0)), 2.5, 0);
    cr_expect_null(kiln_squeeze(z, 1));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "squeeze: axis 1 is out of range for a 0-d tensor");
    cr_expect_null(kiln_squeeze(a, -3));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "squeeze: axis -3 is out of range");
}

static kiln_tensor *f_squeeze_noop(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    return kiln_mul(kiln_squeeze(x[0], 1), kiln_squeeze(x[0], 0)); /* [3, 4] both ways */
}

KT_TEST(views, squeeze_axis_not_one_backward) {
    kiln_tensor *x = kt_rand_input(2, SHAPE(3, 4), -1, 1);
    GC(f_squeeze_noop, 1, &x);
}

static kiln_tensor *f_squeeze(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *s = kiln_squeeze(x[0], KILN_ALL_AXES);               /* [1, 3, 1, 4] -> [3, 4] */
    kiln_tensor *f = kiln_flatten(kiln_transpose(s, 0, 1), 0, 1);     /* [12], a copy */
    kiln_tensor *u = kiln_unsqueeze(kiln_sqrt(kiln_add_scalar(kiln_mul(f, f), 1)), 0);
    return kiln_mul(u, kiln_flatten(x[0], 0, -1));                    /* [1, 12] */
}

KT_TEST(views, squeeze_unsqueeze_flatten_backward) {
    kiln_tensor *x = kt_rand_input(4, SHAPE(1, 3, 1, 4), -1, 1);
    GC(f_squeeze, 1, &x);
}

/* Views of views of views: geometry composes, values and gradients follow. */
static kiln_tensor *f_chain(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *r = kiln_reshape(x[0], 3, SHAPE(2, 3, 4));
    kiln_tensor *p = kiln_permute(r, (int[]){2, 0, 1});               /* [4, 2, 3] */
    kiln_tensor *s = kiln_slice(p, 0, 1, 4, 2);                       /* [2, 2, 3] */
    kiln_tensor *e = kiln_expand(kiln_unsqueeze(s, 0), 4, SHAPE(2, 2, 2, 3));
    return kiln_sigmoid(kiln_mul(e, kiln_squeeze(kiln_slice(p, 0, 0, 1, 1), 0)));
}

KT_TEST(views, composed_views_backward) {
    kiln_tensor *x = kt_rand_input(1, SHAPE(24), -2, 2);
    GC(f_chain, 1, &x);
}

/* Test support shared by the Criterion suites: a per-test scope whose teardown
 * asserts that the pools hold no live bytes, value helpers, the float64
 * gradient checker, and a temporary directory per test process. */
#ifndef KILN_TEST_H
#define KILN_TEST_H

#include <criterion/criterion.h>
#include <kiln.h>
#include <math.h>

/* Opens a scope for the test (the suite's .init). */
void kiln_test_setup(void);
/* Ends the test's scope and fails the test unless the CPU pool holds zero live bytes. */
void kt_check_leaks(void);
/* The suite's .fini: ends a scope still open and shuts kiln down. */
void kiln_test_teardown(void);

/* A Criterion test whose body is followed by the leak check. The check must run in
 * the test body: Criterion reports assertions made in .fini but does not fail the
 * test for them. Use KT_TEST everywhere instead of Test. */
#define KT_TEST(Suite, Name, ...)                                                  \
    static void kt_body_##Suite##_##Name(void);                                    \
    Test(Suite, Name, ##__VA_ARGS__) {                                             \
        kt_body_##Suite##_##Name();                                                \
        kt_check_leaks();                                                          \
    }                                                                              \
    static void kt_body_##Suite##_##Name(void)

/* A CPU tensor from literal values. */
kiln_tensor *kt_tensor(kiln_dtype dt, int ndim, const int64_t *shape, const double *values);
#define KT_F32(ndim, shape, ...) kt_tensor(KILN_F32, ndim, (const int64_t[])shape, (const double[])__VA_ARGS__)
#define KT_F64(ndim, shape, ...) kt_tensor(KILN_F64, ndim, (const int64_t[])shape, (const double[])__VA_ARGS__)
#define KT_SHAPE(...) {__VA_ARGS__}

/* Asserts t is non-NULL and every element is within atol + rtol*|expected|. */
void kt_expect_values(const kiln_tensor *t, const double *expected, int64_t n, double atol, double rtol);
#define KT_EXPECT(t, atol, rtol, ...)                                                    \
    do {                                                                                 \
        const double kt_e_[] = __VA_ARGS__;                                              \
        kt_expect_values((t), kt_e_, (int64_t)(sizeof kt_e_ / sizeof kt_e_[0]), atol, rtol); \
    } while (0)
/* Asserts the shape of t. */
void kt_expect_shape(const kiln_tensor *t, int ndim, const int64_t *shape);
#define KT_EXPECT_SHAPE(t, ndim, ...) kt_expect_shape((t), (ndim), (const int64_t[]){__VA_ARGS__})
/* Asserts that the last call failed with status s and a message containing needle; clears it. */
void kt_expect_error(kiln_status s, const char *needle);
/* A copy of t on cuda:0 (fails the test when the copy fails). */
kiln_tensor *kt_to_gpu(kiln_tensor *t);
/* CPU and CUDA results agree element-wise within atol + rtol*|cpu| (NaN matching NaN). */
void kt_expect_same(kiln_tensor *cpu, kiln_tensor *cuda, double atol, double rtol, const char *what);
/* Copies a tensor's values to a malloc'd double array. */
double *kt_values(const kiln_tensor *t);

/* Gradient checker: f maps n f64 CPU inputs to one output. The analytic gradient of
 * sum(f(x) * w) for a fixed random w is compared with central differences (step
 * eps) of the same function in float64. Returns true when every element is within
 * atol + rtol*|numeric|; reports the worst element through Criterion otherwise. */
typedef kiln_tensor *(*kt_fn)(kiln_tensor *const *inputs, void *ctx);
bool kt_gradcheck(kt_fn f, void *ctx, int n, kiln_tensor *const *inputs, double eps, double atol, double rtol);
/* Random f64 input in [lo, hi) with requires_grad set. */
kiln_tensor *kt_rand_input(int ndim, const int64_t *shape, double lo, double hi);

/* The test process's temporary directory, made on first use as /tmp/kiln_test_XXXXXX;
 * fails the test when it cannot be made. */
const char *kt_scratch_dir(void);
/* buf (n bytes) = the temporary directory / name; returns buf (fails the test when it does not fit). */
const char *kt_scratch_path(char *buf, size_t n, const char *name);
/* Removes the temporary directory and everything in it (expects that to succeed); the next
 * kt_scratch_dir makes a fresh one. Does nothing when none was made. */
void kt_scratch_remove(void);

#endif

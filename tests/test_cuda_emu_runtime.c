/* The CUDA emulator itself (kernels/emu): barriers, shared memory, warp shuffles,
 * atomics, and the misuse it reports instead of silently computing garbage. The
 * kernels are in tests/emu/emu_selftest.cu. */
#include "support/kiln_test.h"

#include <stdlib.h>

int kiln_emu_selftest_reverse(float *out, const float *in, int n, int dynamic);
int kiln_emu_selftest_warp(double *out, int blocks, int threads);
int kiln_emu_selftest_block_sum(double *out, const double *x, int blocks, int threads);
int kiln_emu_selftest_atomic(int *counter, int blocks, int threads);
int kiln_emu_selftest_misuse(int which, int *scratch);
int kiln_emu_selftest_launch_check(int *scratch);

TestSuite(cuda_emu_runtime, .init = kiln_test_setup, .fini = kiln_test_teardown);

static void check_reverse(int dynamic) {
    enum { N = 300 }; /* 3 blocks of 128, the last one partial */
    float in[N], out[N];
    for (int i = 0; i < N; i++) in[i] = (float)i, out[i] = -7;
    cr_assert_eq(kiln_emu_selftest_reverse(out, in, N, dynamic), 0);
    for (int i = 0; i < N; i++) {
        int b = i / 128, t = i % 128, src = b * 128 + 127 - t;
        float want = src < N ? (float)src : -1.0f;
        cr_assert_eq(out[i], want, "element %d: %g, expected %g", i, out[i], want);
    }
}

KT_TEST(cuda_emu_runtime, syncthreads_orders_shared_memory) { check_reverse(0); }
KT_TEST(cuda_emu_runtime, dynamic_shared_memory) { check_reverse(1); }

KT_TEST(cuda_emu_runtime, warp_shuffles_exchange_lane_values) {
    enum { BLOCKS = 2, THREADS = 64 };
    double *out = calloc(BLOCKS * THREADS * 5, sizeof(double));
    cr_assert_eq(kiln_emu_selftest_warp(out, BLOCKS, THREADS), 0);
    for (int b = 0; b < BLOCKS; b++)
        for (int t = 0; t < THREADS; t++) {
            int lane = t % 32;
            double total = 0, prefix = 0;
            for (int l = 0; l < 32; l++) total += l * l + b;
            for (int l = 0; l <= lane; l++) prefix += l * l + b;
            const double *o = out + (b * THREADS + t) * 5;
            if (lane == 0) cr_expect_eq(o[0], total, "shfl_down sum, block %d thread %d: %g", b, t, o[0]);
            cr_expect_eq(o[1], total, "shfl_xor sum, block %d thread %d: %g", b, t, o[1]);
            cr_expect_eq(o[2], 25 + b, "shfl broadcast, block %d thread %d: %g", b, t, o[2]);
            cr_expect_eq(o[3], prefix, "shfl_up scan, block %d thread %d: %g vs %g", b, t, o[3], prefix);
            cr_expect_eq(o[4], (double)0xaaaaaaaau, "ballot, block %d thread %d", b, t);
        }
    free(out);
}

KT_TEST(cuda_emu_runtime, block_sum_reduces_every_warp) {
    const int sizes[] = {32, 96, 256, 1024};
    for (int k = 0; k < 4; k++) {
        int threads = sizes[k], blocks = 3;
        double *x = malloc(sizeof(double) * threads * blocks), out[3];
        for (int i = 0; i < threads * blocks; i++) x[i] = (i % 7) - 2.5;
        cr_assert_eq(kiln_emu_selftest_block_sum(out, x, blocks, threads), 0);
        for (int b = 0; b < blocks; b++) {
            double want = 0;
            for (int t = 0; t < threads; t++) want += x[b * threads + t];
            cr_expect_eq(out[b], want, "%d threads, block %d: %g vs %g", threads, b, out[b], want);
        }
        free(x);
    }
}

KT_TEST(cuda_emu_runtime, atomics_count_every_thread) {
    int counter = 0;
    cr_assert_eq(kiln_emu_selftest_atomic(&counter, 5, 96), 0);
    cr_expect_eq(counter, 5 * 96);
}

/* cudaError_t values of the emulator (kernels/emu/cuda_emu.h). */
#define EMU_INVALID_VALUE 1
#define EMU_INVALID_CONFIGURATION 9
#define EMU_LAUNCH_FAILURE 719

KT_TEST(cuda_emu_runtime, misuse_is_reported) {
    int scratch[64] = {0};
    cr_expect_eq(kiln_emu_selftest_misuse(0, scratch), EMU_LAUNCH_FAILURE, "divergent __syncthreads");
    cr_expect_eq(kiln_emu_selftest_misuse(1, scratch), EMU_LAUNCH_FAILURE, "deadlock");
    cr_expect_eq(kiln_emu_selftest_misuse(2, scratch), EMU_LAUNCH_FAILURE, "shuffle from an exited lane");
    cr_expect_eq(kiln_emu_selftest_misuse(3, scratch), EMU_INVALID_CONFIGURATION, "2048-thread block");
    cr_expect_eq(kiln_emu_selftest_misuse(4, scratch), EMU_INVALID_VALUE, "64 KiB of dynamic shared memory");
    /* the error was taken by cudaGetLastError: the next launch is clean */
    int counter = 0;
    cr_expect_eq(kiln_emu_selftest_atomic(&counter, 1, 32), 0);
    cr_expect_eq(counter, 32);
}

KT_TEST(cuda_emu_runtime, launch_check_names_op_and_error) {
    int scratch[4] = {0};
    cr_assert_eq(kiln_emu_selftest_launch_check(scratch), KILN_STATUS_BACKEND);
    const char *msg = kiln_last_error();
    cr_expect(strstr(msg, "'selftest'") && strstr(msg, "cudaErrorInvalidConfiguration") && strstr(msg, "emu_selftest.cu"),
              "message: %s", msg);
    kiln_clear_error();
}

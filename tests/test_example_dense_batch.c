/* The dense_batch example: its identities (batch product = per-sample outputs, batch
 * backprop = summed per-sample gradients) hold in f64 and f32, and a mini-batch step
 * differs from per-sample steps by a gap that shrinks as lr². */
#include "support/kiln_test.h"
#include "support/kt_program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(example_dense_batch, .init = kiln_test_setup, .fini = kiln_test_teardown);

static const char *const identity_keys[] = {
    "forward_per_sample_max_abs_diff", "forward_kiln_linear_max_abs_diff", "dX_formula_max_abs_diff",
    "dW_formula_max_abs_diff",         "db_formula_max_abs_diff",          "dX_per_sample_max_abs_diff",
    "dW_sum_per_sample_max_abs_diff",  "db_sum_per_sample_max_abs_diff",   "accumulated_step_max_abs_diff"};

static void check_run(const char *args, double max_identity_diff) {
    kt_program_result r;
    kt_program_run("dense_batch", args, &r);
    cr_assert_eq(r.status, 0, "dense_batch %s exited %d:\n%s", args, r.status, r.out);
    cr_assert(r.json != NULL, "no JSON line in:\n%s", r.out);
    cr_assert_str_eq(json_string_value(json_object_get(r.json, "program")), "dense_batch");
    cr_assert(json_is_true(json_object_get(r.json, "identities_hold")));
    for (size_t i = 0; i < sizeof identity_keys / sizeof identity_keys[0]; i++) {
        double d = kt_json_number(r.json, identity_keys[i]);
        cr_expect(d >= 0 && d <= max_identity_diff, "%s = %g, above %g", identity_keys[i], d, max_identity_diff);
    }
    double lr[3], gap[3];
    kt_json_array(r.json, "step_lr", 3, lr, 3);
    kt_json_array(r.json, "batch_vs_per_sample_steps_max_abs_diff", 3, gap, 3);
    cr_expect(gap[0] > 1e-4, "per-sample steps should end visibly apart from the batch step: %g", gap[0]);
    for (int k = 0; k < 2; k++) {
        /* second order in lr: lr/10 gives a gap about 100 times smaller */
        double ratio = gap[k] / gap[k + 1];
        cr_expect(ratio > 50 && ratio < 200, "gap(lr %g) / gap(lr %g) = %g, expected about 100", lr[k], lr[k + 1],
                  ratio);
    }
    kt_json_number(r.json, "wall_s");
    kt_program_result_free(&r);
}

KT_TEST(example_dense_batch, identities_f64) { check_run("--device cpu --json", 1e-12); }

/* Bigger, so the sums really run in different orders; f32 rounding of values up to a
 * few hundred. */
KT_TEST(example_dense_batch, identities_f32) {
    check_run("--device cpu --dtype f32 --batch 32 --in-features 50 --out-features 7 --seed 3 --json", 1e-2);
}

/* Options name themselves, their value and what is allowed; a bad KILN_DEVICE is said
 * as itself (it used to be recorded as an error that masked later ones). */
KT_TEST(example_dense_batch, bad_options_say_what_is_allowed) {
    const kt_case cases[] = {
        {"--batch 1", "dense_batch: --batch: 1 is outside the allowed range 2..1024"},
        {"--in-features 2147483647", "dense_batch: --in-features: 2147483647 is outside the allowed range 1..1024"},
        {"--out-features ' 3'", "dense_batch: --out-features: ' 3' is not an int-sized integer"},
        /* --out is a directory in every example; this one writes none, so it says so */
        {"--out 10", "dense_batch: --out does not apply to dense_batch: it writes no files (the number of output "
                     "features is --out-features)"},
        {"--seed 1e3", "dense_batch: --seed: '1e3' is not a 64-bit integer"},
    };
    char cmd[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kt_program_result r;
        snprintf(cmd, sizeof cmd, "--device cpu %s 2>&1", cases[i].args);
        kt_program_run("dense_batch", cmd, &r);
        cr_expect_eq(r.status, 2, "'%s' exited %d", cases[i].args, r.status);
        cr_expect(strstr(r.out, cases[i].says), "'%s' does not say '%s':\n%s", cases[i].args, cases[i].says, r.out);
        kt_program_result_free(&r);
    }
    setenv("KILN_DEVICE", "gpu", 1);
    kt_program_result r;
    kt_program_run("dense_batch", "--json 2>&1", &r);
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.out, "dense_batch: KILN_DEVICE='gpu' is not a device"), "%s", r.out);
    kt_program_result_free(&r);
    kt_program_run("dense_batch", "--device cpu --json", &r);
    cr_expect_eq(r.status, 0, "--device cpu makes KILN_DEVICE irrelevant:\n%s", r.out);
    cr_expect(r.json != NULL);
    kt_program_result_free(&r);
    setenv("KILN_DEVICE", "cpu", 1);
}

KT_TEST(example_dense_batch, bad_options_exit_2) {
    kt_program_result r;
    kt_program_run("dense_batch", "--batch 1 2>/dev/null", &r);
    cr_expect_eq(r.status, 2);
    kt_program_result_free(&r);
    kt_program_run("dense_batch", "--dtype f16 2>/dev/null", &r);
    cr_expect_eq(r.status, 2);
    kt_program_result_free(&r);
}

/* --threads is accepted, range-checked (1..256) and reported in the result line. */
KT_TEST(example_dense_batch, threads_option) {
    kt_program_result r;
    kt_program_run("dense_batch", "--device cpu --threads 2 --batch 4 --in-features 8 --out-features 3", &r);
    cr_assert_eq(r.status, 0, "%s", r.out);
    cr_assert(r.json, "%s", r.out);
    cr_expect_eq(kt_json_number(r.json, "threads"), 2);
    kt_program_result_free(&r);
    const char *bad[] = {"--threads 0", "--threads 257", "--threads -1", "--threads 1.5"};
    for (size_t i = 0; i < 4; i++) {
        kt_program_run("dense_batch", bad[i], &r);
        cr_expect_eq(r.status, 2, "'%s' exited %d", bad[i], r.status);
        kt_program_result_free(&r);
    }
    kt_program_run("dense_batch", "--help", &r);
    cr_expect(strstr(r.out, "--threads N") && strstr(r.out, "(1..256)"), "%s", r.out);
    kt_program_result_free(&r);
}

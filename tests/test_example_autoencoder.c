/* The autoencoder example in a tiny configuration: its JSON result, the pictures it
 * writes, and the consistency of its code analysis (eigenvalues sorted and summing to
 * the total variance, ratios summing to 1, 90%/99% counts), skipped, visibly, when
 * Fashion-MNIST is not installed; and, on a fake 64-image data set written here, clear
 * errors for hostile options, a diverging run and a bad --out. */
#include "support/kiln_test.h"
#include "support/kt_program.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(example_autoencoder, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(example_autoencoder, tiny_run_and_code_analysis) {
    if (!kt_fashion_mnist_available("example_autoencoder.tiny_run_and_code_analysis"))
        cr_skip_test("Fashion-MNIST is not installed");
    enum { L = 8 };
    char *dir = kt_temp_dir(), args[1024];
    snprintf(args, sizeof args, "--device cpu --json --out '%s' --latent %d --limit 300 --epochs 2 --batch 50", dir, L);
    kt_program_result r;
    kt_program_run("autoencoder", args, &r);
    cr_assert_eq(r.status, 0, "autoencoder %s exited %d:\n%s", args, r.status, r.out);
    cr_assert(r.json != NULL, "no JSON line in:\n%s", r.out);
    json_t *j = r.json;
    cr_expect_eq(kt_json_number(j, "latent"), L);
    cr_expect_eq(kt_json_number(j, "steps"), 12);
    /* 784*256+256 + 256*L+L + L*256+256 + 256*784+784 */
    cr_expect_eq(kt_json_number(j, "parameters"), 200960 + 256 * L + L + 256 * L + 256 + 201488);
    double mse[2];
    kt_json_array(j, "train_mse_per_epoch", 2, mse, 2);
    cr_expect(mse[1] < mse[0], "the reconstruction error should fall: %g then %g", mse[0], mse[1]);
    double test_mse = kt_json_number(j, "test_mse");
    cr_expect(test_mse > 0 && test_mse < 0.25, "test MSE %g", test_mse);

    double mean[L], sd[L], eig[L], ratio[L], top[5], topw[5];
    kt_json_array(j, "code_mean", L, mean, L);
    kt_json_array(j, "code_std", L, sd, L);
    kt_json_array(j, "eigenvalues", L, eig, L);
    kt_json_array(j, "explained_variance_ratio", L, ratio, L);
    kt_json_array(j, "top_units", 5, top, 5);
    kt_json_array(j, "top_unit_weights", 5, topw, 5);
    /* The trace: the eigenvalues of the covariance add up to the sum of the variances. */
    double trace = 0, total = 0, rsum = 0;
    for (int i = 0; i < L; i++) {
        cr_expect(sd[i] >= 0);
        trace += sd[i] * sd[i];
        total += eig[i];
        rsum += ratio[i];
        if (i) cr_expect(eig[i] <= eig[i - 1], "eigenvalues not sorted largest first at %d", i);
        cr_expect(eig[i] >= 0);
    }
    cr_expect(fabs(total - trace) <= 1e-9 * trace, "sum of eigenvalues %.12g vs sum of variances %.12g", total, trace);
    cr_expect(fabs(rsum - 1) < 1e-12, "explained-variance ratios sum to %.15g", rsum);
    for (int i = 0; i < L; i++) cr_expect(fabs(ratio[i] - eig[i] / total) < 1e-12);
    int k90 = (int)kt_json_number(j, "components_90"), k99 = (int)kt_json_number(j, "components_99");
    cr_expect(1 <= k90 && k90 <= k99 && k99 <= L, "components_90 %d, components_99 %d", k90, k99);
    double cum = 0;
    for (int k = 0; k < k90; k++) cum += ratio[k];
    cr_expect(cum >= 0.9 && cum - ratio[k90 - 1] < 0.9, "%d components hold %g of the variance", k90, cum);
    for (int t = 0; t < 5; t++) {
        cr_expect(top[t] >= 0 && top[t] < L && top[t] == floor(top[t]), "top unit %g", top[t]);
        cr_expect(topw[t] >= 0 && topw[t] <= 1);
        if (t) cr_expect(topw[t] <= topw[t - 1]);
    }
    kt_json_png(j, "spectrum_png");
    kt_json_png(j, "reconstructions_png");
    kt_json_number(j, "wall_s");
    kt_program_result_free(&r);
    kt_temp_dir_remove(dir);
}

/* ---- hostile options, on a fake data set ---------------------------------------------- */

KT_TEST(example_autoencoder, hostile_options_are_clear_errors) {
    char *data = kt_fashion_mnist_fake();
    const kt_case cases[] = {
        {"--batch 2147483647", "--batch: 2147483647 is outside the allowed range 1..4096"},
        {"--epochs 2147483647", "--epochs: 2147483647 is outside the allowed range 1..1000"},
        {"--latent 1", "--latent: 1 is outside the allowed range 2..784"},
        {"--lr inf", "--lr: 'inf' is not a finite number"},
        {"--lr -0.1", "--lr: -0.1 is not > 0"},
        {"--batch ' 8'", "--batch: ' 8' is not an int-sized integer"},
        {"--size 28", "--size does not apply to autoencoder (its images are 28x28)"},
    };
    kt_program_expect_errors("autoencoder", data, sizeof cases / sizeof *cases, cases);
    kt_run_dir_remove(data);
}

/* --lr 1e30: the sigmoid keeps the MSE finite, but the codes become NaN; the analysis
 * says the model diverged (not "LAPACK rejected argument 5") and the run fails. */
KT_TEST(example_autoencoder, a_diverging_run_fails_clearly_and_out_must_be_a_directory) {
    char *data = kt_fashion_mnist_fake(), out[600];
    kt_program_result r;
    kt_program_run_data("autoencoder", data, NULL, "--epochs 2 --batch 16 --latent 4 --lr 1e30", &r);
    cr_expect_eq(r.status, 1, "exit %d:\n%s", r.status, r.out);
    cr_expect(strstr(r.out, "autoencoder: ") && strstr(r.out, "diverged (lower --lr"), "%s", r.out);
    cr_expect(!strstr(r.out, "Sanitizer"), "%s", r.out);
    kt_program_result_free(&r);
    snprintf(out, sizeof out, "%s/t10k-labels-idx1-ubyte.gz", data);
    kt_program_run_data("autoencoder", data, out, "--epochs 1 --batch 16 --latent 4", &r);
    cr_expect_eq(r.status, 1, "exit %d:\n%s", r.status, r.out);
    cr_expect(strstr(r.out, "autoencoder: preparing --out failed: --out '") && strstr(r.out, "is a file, not a directory"),
              "%s", r.out);
    cr_expect(!strstr(r.out, "Sanitizer"), "%s", r.out);
    kt_program_result_free(&r);
    kt_program_run_data("autoencoder", data, NULL, "--epochs 1 --batch 16 --latent 4 --json", &r);
    cr_expect_eq(r.status, 0, "exit %d:\n%s", r.status, r.out);
    cr_assert(r.json, "no JSON line:\n%s", r.out);
    cr_expect_eq(kt_json_number(r.json, "steps"), 4);
    kt_json_png(r.json, "spectrum_png");
    kt_json_weights(r.json, data, 8); /* encoder and decoder, two Linear layers each */
    kt_program_result_free(&r);
    kt_run_dir_remove(data);
}

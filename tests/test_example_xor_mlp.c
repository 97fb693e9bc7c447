/* The README's first program takes --help and --steps N like the other examples: a
 * short run still prints its loss, and anything else is bad usage (exit 2). */
#include "support/kiln_test.h"
#include "support/kt_run.h"

#include <string.h>

TestSuite(example_xor_mlp, .init = kiln_test_setup, .fini = kiln_test_teardown);

#ifdef KILN_EXAMPLE_BIN
static const char *const bin = KILN_EXAMPLE_BIN;
#else
static const char *const bin = NULL;
#endif

KT_TEST(example_xor_mlp, help_steps_and_bad_usage) {
    char *d = kt_run_dir("xor_mlp");
    run_result *r = kt_run_ok(bin, d, "--help");
    cr_expect(strstr(r->out, "--steps N") && strstr(r->out, "default 2000"), "--help:\n%s", r->out);
    kt_run_free(r);
    r = kt_run_ok(bin, d, "--steps 501");
    cr_expect(strstr(r->out, "step  500") && strstr(r->out, "final loss") && !strstr(r->out, "step 1000"), "%s", r->out);
    kt_run_free(r);
    const char *bad[] = {"--steps", "--steps 0", "--steps 12x", "--steps 2000000", "--frobnicate", "stray"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = kt_run(bin, d, bad[i]);
        cr_expect(r->status == 2 && strstr(r->err, "usage:"), "'%s' exited %d:\n%s", bad[i], r->status, r->err);
        kt_run_free(r);
    }
    kt_run_dir_remove(d);
}

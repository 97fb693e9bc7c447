/* CPU threads: the default is the affinity mask's CPU count, KILN_NUM_THREADS and
 * OMP_NUM_THREADS are kept, bad counts are refused, loading kiln sets no wait policy (only
 * kiln_prefer_passive_wait, called by a program, does), and that call's choice leaves a
 * user's policy alone. The start-up cases run this binary again as a child (reduced mask,
 * chosen environment) with one test selected. */
#define _GNU_SOURCE
#include "support/kiln_test.h"
#include "core/threads.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(threads, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(threads, counts_parse_in_range_only) {
    int n = 0;
    cr_expect(kiln__threads_parse("1", &n) && n == 1);
    cr_expect(kiln__threads_parse(" 8 ", &n) && n == 8);
    cr_expect(kiln__threads_parse("1024", &n) && n == 1024);
    const char *bad[] = {"", "0", "-1", "+2", "abc", "2x", "4,2", "1025", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_expect(!kiln__threads_parse(bad[i], &n), "'%s' parsed", bad[i]);
    cr_expect(!kiln__threads_parse(NULL, &n));
}

KT_TEST(threads, the_choice_prefers_kiln_then_omp_then_the_mask) {
    kiln_threads_choice c = kiln__threads_choose(NULL, NULL, 6);
    cr_expect(c.source == KILN_THREADS_AFFINITY && c.n == 6 && !c.bad_kiln_env);
    c = kiln__threads_choose("", "", 6); /* empty is unset */
    cr_expect(c.source == KILN_THREADS_AFFINITY && c.n == 6);
    c = kiln__threads_choose(NULL, "3", 6); /* the runtime applied it: leave it */
    cr_expect(c.source == KILN_THREADS_OMP_ENV && c.n == 0);
    c = kiln__threads_choose(NULL, "4,2", 6);
    cr_expect(c.source == KILN_THREADS_OMP_ENV && c.n == 0);
    c = kiln__threads_choose("5", "3", 6);
    cr_expect(c.source == KILN_THREADS_KILN_ENV && c.n == 5);
    c = kiln__threads_choose("zero", "3", 6); /* bad: the default, flagged */
    cr_expect(c.source == KILN_THREADS_AFFINITY && c.n == 6 && c.bad_kiln_env);
    c = kiln__threads_choose(NULL, NULL, 0);
    cr_expect_eq(c.n, 1);
}

KT_TEST(threads, the_policy_is_left_to_a_user_who_set_one) {
    cr_expect_eq(kiln__threads_policy("active", NULL, 4, true, false), KILN_THREADS_POLICY_USER);
    cr_expect_eq(kiln__threads_policy(NULL, "10000", 4, true, false), KILN_THREADS_POLICY_USER);
    cr_expect_eq(kiln__threads_policy(NULL, NULL, 1, true, false), KILN_THREADS_POLICY_ONE_THREAD);
    cr_expect_eq(kiln__threads_policy(NULL, NULL, 4, false, false), KILN_THREADS_POLICY_SETENV_ONLY);
    cr_expect_eq(kiln__threads_policy(NULL, NULL, 4, true, true), KILN_THREADS_POLICY_SETENV_ONLY);
    cr_expect_eq(kiln__threads_policy("", "", 4, true, false), KILN_THREADS_POLICY_REEXEC);
}

KT_TEST(threads, the_affinity_count_is_the_mask) {
    cpu_set_t set;
    CPU_ZERO(&set);
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    cr_expect_eq(kiln__threads_affinity_count(), CPU_COUNT(&set));
}

KT_TEST(threads, set_num_threads_works_and_refuses_bad_counts) {
    int before = kiln_get_num_threads();
    cr_expect_eq(kiln_set_num_threads(3), KILN_STATUS_OK);
    cr_expect_eq(kiln_get_num_threads(), 3);
    cr_expect_eq(kiln_set_num_threads(0), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_set_num_threads: 0 threads; give 1 to 1024");
    cr_expect_eq(kiln_set_num_threads(-2), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "-2 threads");
    cr_expect_eq(kiln_set_num_threads(1025), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "1025 threads");
    cr_expect_eq(kiln_get_num_threads(), 3, "a refused count changes nothing");
    cr_expect_eq(kiln_set_num_threads(before), KILN_STATUS_OK);
}

/* ---- start-up, in a child: this binary again, only threads_child/report selected ---- */

/* The child's side: KT_THREADS_EXPECT is the count kiln must have chosen, KT_POLICY_EXPECT
 * the OMP_WAIT_POLICY its environment must hold ("" for none). */
Test(threads_child, report) {
    const char *want = getenv("KT_THREADS_EXPECT");
    if (!want) return; /* an ordinary run: nothing to report */
    cr_expect_eq(kiln_get_num_threads(), atoi(want), "threads %d, expected %s", kiln_get_num_threads(), want);
    const char *policy = getenv("OMP_WAIT_POLICY"), *want_policy = getenv("KT_POLICY_EXPECT");
    cr_expect_str_eq(policy ? policy : "", want_policy ? want_policy : "");
}

/* Runs the child with only PATH and env (NAME=VALUE, NULL-terminated) in its environment,
 * on the first ncpu CPUs of the mask (0: all). */
static int run_child(int ncpu, const char *const *env) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (ncpu > 0) {
            cpu_set_t set, fewer;
            CPU_ZERO(&fewer);
            sched_getaffinity(0, sizeof set, &set);
            for (int c = 0, k = 0; c < CPU_SETSIZE && k < ncpu; c++)
                if (CPU_ISSET(c, &set)) CPU_SET(c, &fewer), k++;
            if (sched_setaffinity(0, sizeof fewer, &fewer) != 0) _exit(90);
        }
        /* A fresh environment: the Criterion worker's own variables would make the child a worker. */
        char *envp[16];
        int k = 0;
        envp[k++] = "PATH=/usr/bin:/bin";
        for (const char *const *e = env; *e && k < 15; e++) envp[k++] = (char *)*e;
        envp[k] = NULL;
        char *argv[] = {"test_threads", "--filter=threads_child/report", "--jobs=1", NULL};
        execve("/proc/self/exe", argv, envp);
        _exit(91);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

KT_TEST(threads, the_default_is_the_cores_the_process_may_use) {
    int all = kiln__threads_affinity_count();
    char want[32], policy[32];
    snprintf(want, sizeof want, "KT_THREADS_EXPECT=%d", all);
    snprintf(policy, sizeof policy, "KT_POLICY_EXPECT=");
    int rc = run_child(0, (const char *const[]){want, policy, NULL});
    cr_expect_eq(rc, 0, "whole mask: %d threads, no policy set by loading kiln (child exit %d)", all, rc);
    cr_expect_eq(run_child(1, (const char *const[]){"KT_THREADS_EXPECT=1", "KT_POLICY_EXPECT=", NULL}), 0,
                 "one CPU in the mask: one thread");
}

KT_TEST(threads, an_explicit_count_or_policy_is_kept) {
    cr_expect_eq(run_child(1, (const char *const[]){"OMP_NUM_THREADS=3", "KT_THREADS_EXPECT=3",
                                                    "KT_POLICY_EXPECT=", NULL}), 0, "OMP_NUM_THREADS=3");
    cr_expect_eq(run_child(0, (const char *const[]){"KILN_NUM_THREADS=5", "OMP_NUM_THREADS=3", "KT_THREADS_EXPECT=5",
                                                    "KT_POLICY_EXPECT=", NULL}), 0, "KILN_NUM_THREADS wins");
    cr_expect_eq(run_child(0, (const char *const[]){"OMP_NUM_THREADS=2", "OMP_WAIT_POLICY=active", "KT_THREADS_EXPECT=2",
                                                    "KT_POLICY_EXPECT=active", NULL}), 0, "a user's policy stays");
    cr_expect_eq(run_child(1, (const char *const[]){"KILN_NUM_THREADS=lots", "KT_THREADS_EXPECT=1", "KT_POLICY_EXPECT=",
                                                    NULL}), 0, "a bad KILN_NUM_THREADS gives the default");
}

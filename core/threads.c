/* CPU threads: how many the kernels use (KILN_NUM_THREADS, else OMP_NUM_THREADS, else the
 * cores this process may run on), and a passive OpenMP wait policy when the user chose
 * none, so that idle threads sleep instead of spinning on cores that others need.
 * Why the wait policy needs a re-exec, and what it measured: docs/benchmarks.md, "Threads". */
#define _GNU_SOURCE
#include "internal.h"
#include "threads.h"

#include <errno.h>
#include <omp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

bool kiln__threads_parse(const char *s, int *out) {
    if (!s) return false;
    while (*s == ' ' || *s == '\t') s++;
    if (*s < '0' || *s > '9') return false; /* no sign, no empty string */
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t') end++;
    if (errno || *end || v < 1 || v > KILN_MAX_THREADS) return false;
    *out = (int)v;
    return true;
}

int kiln__threads_affinity_count(void) {
    /* A mask big enough for any machine (CPU_SETSIZE is 1024); grows on EINVAL. */
    for (size_t ncpu = CPU_SETSIZE; ncpu <= (1u << 20); ncpu *= 4) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set) break;
        size_t size = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(size, set);
        if (sched_getaffinity(0, size, set) == 0) {
            int n = CPU_COUNT_S(size, set);
            CPU_FREE(set);
            return n > 0 ? n : 1;
        }
        CPU_FREE(set);
        if (errno != EINVAL) break;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)(n < KILN_MAX_THREADS ? n : KILN_MAX_THREADS) : 1;
}

kiln_threads_choice kiln__threads_choose(const char *kiln_env, const char *omp_env, int affinity) {
    kiln_threads_choice c = {.source = KILN_THREADS_AFFINITY, .n = affinity < 1 ? 1 : affinity};
    if (c.n > KILN_MAX_THREADS) c.n = KILN_MAX_THREADS;
    if (kiln_env && *kiln_env) {
        int n;
        if (kiln__threads_parse(kiln_env, &n)) return (kiln_threads_choice){.source = KILN_THREADS_KILN_ENV, .n = n};
        c.bad_kiln_env = true; /* reported by the caller; the default applies */
        return c;
    }
    if (omp_env && *omp_env) {
        /* The OpenMP runtime parsed it at its start (a list such as "4,2" included): keep it. */
        c.source = KILN_THREADS_OMP_ENV;
        c.n = 0;
    }
    return c;
}

kiln_threads_policy kiln__threads_policy(const char *wait_policy, const char *spincount, int nthreads,
                                         bool in_main_program, bool secure) {
    if ((wait_policy && *wait_policy) || (spincount && *spincount)) return KILN_THREADS_POLICY_USER;
    if (nthreads <= 1) return KILN_THREADS_POLICY_ONE_THREAD; /* no idle thread to spin */
    if (!in_main_program || secure) return KILN_THREADS_POLICY_SETENV_ONLY;
    return KILN_THREADS_POLICY_REEXEC;
}

/* Runs before main (or at dlopen) and before any kiln parallel region: the thread count.
 * The wait policy is not touched here (see kiln_prefer_passive_wait). */
__attribute__((constructor)) static void kiln_threads_init(void) {
    const char *kiln_env = getenv("KILN_NUM_THREADS");
    kiln_threads_choice c = kiln__threads_choose(kiln_env, getenv("OMP_NUM_THREADS"), kiln__threads_affinity_count());
    if (c.n > 0) omp_set_num_threads(c.n);
    /* A constructor has no caller to return an error to; like libgomp with a bad
     * OMP_NUM_THREADS, say so once and go on with the default. */
    if (c.bad_kiln_env)
        fprintf(stderr, "kiln: KILN_NUM_THREADS='%s' is not a thread count (1 to %d); using %d, the cores this "
                "process may run on\n", kiln_env, KILN_MAX_THREADS, c.n);
}

/* libgomp reads OMP_WAIT_POLICY in its own constructor, which runs before any code of the
 * program: a setenv now reaches only child processes, so the program starts over once with
 * the variable set (the variable stops a second round). Done only where the program asks
 * for it, at the top of main, never behind its back from a library constructor: a restart
 * runs the program's own start-up code twice. */
void kiln_prefer_passive_wait(char **argv) {
    kiln_threads_policy p = kiln__threads_policy(getenv("OMP_WAIT_POLICY"), getenv("GOMP_SPINCOUNT"),
                                                 omp_get_max_threads(), true, getauxval(AT_SECURE) != 0);
    if (p == KILN_THREADS_POLICY_USER || p == KILN_THREADS_POLICY_ONE_THREAD) return;
    setenv("OMP_WAIT_POLICY", "passive", 0);
    if (p != KILN_THREADS_POLICY_REEXEC || !argv || !argv[0]) return;
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) return; /* valgrind runs the guest itself */
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* No /proc, or exec refused: run on with the runtime's default policy. */
}

void kiln__threads_link(void) {}

kiln_status kiln_set_num_threads(int n) {
    if (n < 1 || n > KILN_MAX_THREADS)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_set_num_threads: %d threads; give 1 to %d", n,
                           KILN_MAX_THREADS);
    omp_set_num_threads(n);
    return KILN_STATUS_OK;
}

int kiln_get_num_threads(void) { return omp_get_max_threads(); }

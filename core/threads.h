/* The pure parts of kiln's thread start-up (core/threads.c), apart so the tests can call
 * them with any environment and mask. */
#ifndef KILN_CORE_THREADS_H
#define KILN_CORE_THREADS_H

#include <stdbool.h>

/* The most threads kiln_set_num_threads and KILN_NUM_THREADS accept. */
#define KILN_MAX_THREADS 1024

typedef enum {
    KILN_THREADS_AFFINITY, /* nothing set: the cores of the affinity mask */
    KILN_THREADS_KILN_ENV, /* KILN_NUM_THREADS */
    KILN_THREADS_OMP_ENV,  /* OMP_NUM_THREADS, already applied by the OpenMP runtime */
} kiln_threads_source;

typedef struct {
    kiln_threads_source source;
    int n;             /* threads to set; 0: leave the runtime's value (OMP_NUM_THREADS) */
    bool bad_kiln_env; /* KILN_NUM_THREADS was set but is not 1..KILN_MAX_THREADS */
} kiln_threads_choice;

/* A decimal thread count in 1..KILN_MAX_THREADS (blanks around it allowed). */
bool kiln__threads_parse(const char *s, int *out);
/* CPUs in this process's affinity mask (sched_getaffinity), at least 1. */
int kiln__threads_affinity_count(void);
/* KILN_NUM_THREADS wins, then OMP_NUM_THREADS, then the affinity count; NULL or "" is unset.
 * A bad KILN_NUM_THREADS gives the affinity count with bad_kiln_env set. */
kiln_threads_choice kiln__threads_choose(const char *kiln_env, const char *omp_env, int affinity);

typedef enum {
    KILN_THREADS_POLICY_USER,        /* OMP_WAIT_POLICY or GOMP_SPINCOUNT set: untouched */
    KILN_THREADS_POLICY_ONE_THREAD,  /* one thread: nothing waits, nothing to set */
    KILN_THREADS_POLICY_SETENV_ONLY, /* a set-uid program: setenv (children only), no exec */
    KILN_THREADS_POLICY_REEXEC,      /* linked into the program: setenv and exec it again */
} kiln_threads_policy;

kiln_threads_policy kiln__threads_policy(const char *wait_policy, const char *spincount, int nthreads,
                                         bool in_main_program, bool secure);

/* Does nothing: core/device.c calls it so that a program linking libkiln.a statically
 * always pulls in core/threads.o, whose constructor sets the defaults above. */
void kiln__threads_link(void);

#endif

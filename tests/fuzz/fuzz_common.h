/* Shared by the fuzz harnesses (docs/fuzzing.md): the input as a file the parsers can
 * open, the per-input begin/end that checks the pools hold nothing afterwards, the
 * "use it as a user would" walk over a loaded tensor, and the checkpoint harness's model. */
#ifndef KILN_FUZZ_COMMON_H
#define KILN_FUZZ_COMMON_H

#include <kiln.h>
#include <stddef.h>
#include <stdint.h>

/* The CPU pool's cap during an input. Below libFuzzer's -rss_limit_mb/-malloc_limit_mb
 * (2048): a tensor a file merely declares (and a reduction of it) makes kiln refuse with
 * KILN_STATUS_OOM instead of reaching the allocator, so only allocations that bypass
 * the pool, or sizes computed wrongly, trip the fuzzer's malloc limit. */
#define KF_POOL_LIMIT ((size_t)1 << 30)

/* An invariant of the API was broken: say which and abort (a crash to libFuzzer, a
 * failed test to the replay). */
#define KF_CHECK(cond, ...)                                                                                    \
    do {                                                                                                       \
        if (!(cond)) kf_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                          \
    } while (0)
void kf_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* With KILN_FUZZ_VERBOSE=1, prints what happened to an input (statuses and errors) on
 * stderr: for reading a regression's replay. Silent otherwise. */
void kf_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes the input to a file (a memfd, else a per-process file in /dev/shm or $TMPDIR)
 * and returns its path; valid until the next call. */
const char *kf_input_path(const uint8_t *data, size_t size);
/* A per-process scratch directory for files the harness writes itself (round trips):
 * kiln's atomic writers rename inside their directory, which a memfd has not. */
const char *kf_scratch_path(const char *name);

/* Opens the input's scope with the pool capped; kf_end closes it, checks that the CPU
 * pool holds zero live bytes, shuts kiln down and checks nothing is left reserved. */
kiln_scope *kf_begin(void);
void kf_end(kiln_scope *s);

/* What a user does with a loaded tensor: cast to f32, read every element, sum over each
 * axis and over all, and check the sums agree with the elements (within rounding).
 * Failures that a declared-but-huge tensor may cause (OOM) are allowed; wrong sums and
 * crashes are not. Everything it makes dies in its own scope. */
void kf_use_tensor(kiln_tensor *t, const char *what);

/* A CPU f32 tensor's bytes (any dtype, any strides) as a malloc'd C-ordered copy; *n its size. */
void *kf_tensor_bytes(kiln_tensor *t, size_t *n);

/* ---- the checkpoint harness's model: "fc" Linear(2, 2) and "bn" BatchNorm2d(2) (so a
 * checkpoint holds f32 parameters, f32 running stats and the i64 num_batches_tracked)
 * trained by Adam. gen_corpus writes checkpoints of it. */
typedef struct {
    kiln_module *root, *fc, *bn;
    kiln_optimizer *opt;
} kf_model;

/* false (with kiln's error) if the model cannot be built. */
bool kf_model_make(kf_model *m);
/* One training step on a fixed batch; its status (NaN weights from a file may fail it). */
kiln_status kf_model_step(kf_model *m);
void kf_model_free(kf_model *m);

#endif

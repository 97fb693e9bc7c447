/* Running an example program as a user does, for the tests of car_mask and segment7:
 * in a fresh directory, both streams captured, the last stdout line parsed as its
 * JSON result; checks on that JSON and on the PNGs it writes; and what the tests of
 * hostile inputs share (a huge PNG that costs nothing to write, the peak memory). */
#ifndef KT_RUN_H
#define KT_RUN_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A command line a program must refuse, and words its error must hold. */
typedef struct {
    const char *args, *says;
} kt_case;

typedef struct {
    int status;          /* exit status, -1 if it did not exit normally */
    char out[1 << 15];   /* stdout */
    char err[1 << 13];   /* stderr */
    json_t *json;        /* the last stdout line, parsed (NULL if it is not JSON) */
} run_result;

/* Runs bin with args in dir (skips the test when bin is NULL: examples not built). */
run_result *kt_run(const char *bin, const char *dir, const char *args);
/* kt_run, asserting that the program exited 0 (the message shows its stderr). */
run_result *kt_run_ok(const char *bin, const char *dir, const char *args);
/* kt_run, expecting a refusal: a non-zero exit and stderr holding both prefix (the
 * program's "name: ") and says. Returns the result for more checks. */
run_result *kt_run_refused(const char *bin, const char *dir, const char *args, const char *prefix, const char *says);
void kt_run_free(run_result *r);
/* A fresh directory /tmp/kiln_<tag>_XXXXXX (malloc'd), and its removal (frees it). */
char *kt_run_dir(const char *tag);
void kt_run_dir_remove(char *d);
/* An empty file dir/name, e.g. where a program expects to make a directory. */
void kt_run_touch(const char *dir, const char *name);
/* A per-epoch array of n finite numbers within [lo, hi]. */
void kt_expect_series(json_t *j, const char *key, size_t n, double lo, double hi);
/* key is a finite number; returns it. */
double kt_number(json_t *j, const char *key);
/* path is a readable PNG with that many channels (and that size, when w > 0). */
void kt_expect_png(const char *path, int channels, int w, int h);
/* Writes a valid w x h 8-bit gray PNG of zeros, its IDAT deflated row by row (no w*h
 * buffer): a 16384x16384 one is 261 KB on disk and 268 Mpixel decoded. */
void kt_write_zero_png(const char *path, uint32_t w, uint32_t h);
/* Peak resident memory of this test's process, in bytes (Criterion forks one per test). */
long kt_peak_rss(void);

#endif

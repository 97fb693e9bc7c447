/* Running an example program as a user does, for the tests of car_mask and segment7:
 * in a fresh directory, both streams captured, the last stdout line parsed as its
 * JSON result; and checks on that JSON and on the PNGs it writes. */
#ifndef KT_RUN_H
#define KT_RUN_H

#include <jansson.h>
#include <stddef.h>

typedef struct {
    int status;          /* exit status, -1 if it did not exit normally */
    char out[1 << 15];   /* stdout */
    char err[1 << 13];   /* stderr */
    json_t *json;        /* the last stdout line, parsed (NULL if it is not JSON) */
} run_result;

/* Runs bin with args in dir (skips the test when bin is NULL: examples not built). */
run_result *kt_run(const char *bin, const char *dir, const char *args);
void kt_run_free(run_result *r);
/* A fresh directory /tmp/kiln_<tag>_XXXXXX (malloc'd), and its removal (frees it). */
char *kt_run_dir(const char *tag);
void kt_run_dir_remove(char *d);
/* A per-epoch array of n finite numbers within [lo, hi]. */
void kt_expect_series(json_t *j, const char *key, size_t n, double lo, double hi);
/* key is a finite number; returns it. */
double kt_number(json_t *j, const char *key);
/* path is a readable PNG with that many channels (and that size, when w > 0). */
void kt_expect_png(const char *path, int channels, int w, int h);

#endif

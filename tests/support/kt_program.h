/* Test support for the example programs: run one (built beside the tests) with its
 * --json option, capture stdout, parse its last line as the program's JSON result,
 * and check keys, finite numbers and written files. */
#ifndef KT_PROGRAM_H
#define KT_PROGRAM_H

#include "kt_run.h" /* kt_case; kt_run_dir_remove removes a directory tree */

#include <jansson.h>
#include <stdbool.h>

typedef struct {
    int status;   /* the exit status; -1 if the program could not be started or was killed */
    char *out;    /* everything it wrote on stdout (malloc'd) */
    json_t *json; /* its last stdout line as a JSON object, or NULL */
} kt_program_result;

/* Runs the example `name` with `args` (a shell-quoted string; stderr is left alone, so
 * it shows in the test log). Fails the test when the program cannot be found. */
void kt_program_run(const char *name, const char *args, kt_program_result *r);
void kt_program_result_free(kt_program_result *r);
/* Runs `name` as "--device cpu --data 'data' --out 'out' args 2>&1", so r->out holds both
 * streams; out NULL means data/out. */
void kt_program_run_data(const char *name, const char *data, const char *out, const char *args, kt_program_result *r);
/* For each case, kt_program_run_data(name, data, NULL, case's args) must exit 2 with
 * "<name>: " and the case's words in its output, and no sanitizer report. */
void kt_program_expect_errors(const char *name, const char *data, size_t n, const kt_case *cases);

/* Asserts key exists and is a finite number (or an array of n > 0 finite numbers when
 * n is not 0: n < 0 accepts any length). Returns the number (the first element). */
double kt_json_number(json_t *obj, const char *key);
double kt_json_array(json_t *obj, const char *key, int n, double *out, int cap);
/* Asserts key is a string naming a PNG file that exists. */
void kt_json_png(json_t *obj, const char *key);

/* The JSON result's "weights" is OUT/model.safetensors (under dir, when not NULL): the
 * model's n state_dict tensors, no optimizer state (what torch's strict load takes). */
void kt_json_weights(json_t *obj, const char *dir, int n);

/* A fresh directory under /tmp for a program's pictures (malloc'd path), and its
 * removal with the files in it (frees the path). */
char *kt_temp_dir(void);
void kt_temp_dir_remove(char *dir);
/* True when Debian's Fashion-MNIST files are installed. Otherwise prints a line that
 * CTest reports as a skip (the test's SKIP_REGULAR_EXPRESSION) and returns false. */
bool kt_fashion_mnist_available(const char *test);
/* A --data directory (malloc'd path; kt_run_dir_remove removes it with what runs wrote
 * into it) of 64 gzip IDX images (28x28) and labels (0..9) for each split. */
char *kt_fashion_mnist_fake(void);

#endif

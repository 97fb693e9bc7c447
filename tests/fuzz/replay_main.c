/* A main for the fuzz harnesses without libFuzzer: runs LLVMFuzzerTestOneInput once per
 * file named on the command line, or per file in each directory named (sorted, not
 * recursive), so the seed corpora and the regression inputs run as CTest tests with any
 * compiler and sanitizer. Each input has KILN_FUZZ_TIMEOUT seconds (default 20): a hang
 * is reported with the file's name instead of stalling the suite. Exits non-zero when an
 * input fails, when a path is missing, or when there were no inputs at all. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char *volatile g_current = "";
static unsigned g_timeout = 20;

static void on_alarm(int sig) {
    (void)sig;
    /* async-signal-safe writes only */
    const char *a = "replay: TIMEOUT: more than KILN_FUZZ_TIMEOUT seconds on ";
    const char *p = g_current;
    if (write(2, a, strlen(a)) < 0 || write(2, p, strlen(p)) < 0 || write(2, " (a hang)\n", 10) < 0) _exit(70);
    _exit(70);
}

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return 2;
    }
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t k; buf && (k = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += k;
        if (n == cap) {
            uint8_t *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: out of memory reading %s\n", path);
        return 2;
    }
    printf("replay: %s (%zu bytes)\n", path, n);
    fflush(stdout);
    g_current = path;
    alarm(g_timeout);
    LLVMFuzzerTestOneInput(buf, n);
    alarm(0);
    free(buf);
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

int main(int argc, char **argv) {
    const char *t = getenv("KILN_FUZZ_TIMEOUT");
    if (t && atoi(t) > 0) g_timeout = (unsigned)atoi(t);
    signal(SIGALRM, on_alarm);
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int inputs = 0, rc = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            rc = 2;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[i])) rc = 2;
            else inputs++;
            continue;
        }
        struct dirent **ents;
        int k = scandir(argv[i], &ents, NULL, by_name);
        if (k < 0) {
            fprintf(stderr, "replay: cannot list %s: %s\n", argv[i], strerror(errno));
            rc = 2;
            continue;
        }
        for (int j = 0; j < k; j++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s", argv[i], ents[j]->d_name);
            struct stat fs;
            if (ents[j]->d_name[0] != '.' && stat(p, &fs) == 0 && S_ISREG(fs.st_mode)) {
                if (run_file(p)) rc = 2;
                else inputs++;
            }
            free(ents[j]);
        }
        free(ents);
    }
    if (inputs == 0 && rc == 0) {
        fprintf(stderr, "replay: no inputs in %s\n", argc > 1 ? argv[1] : "(no paths given)");
        rc = 2;
    }
    printf("replay: %d inputs ran\n", inputs);
    return rc;
}

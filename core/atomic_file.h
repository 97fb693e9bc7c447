/* Replacing a file atomically: write a temporary file beside the target, fsync it,
 * rename it over the target; symbolic links written through, permission bits kept,
 * stale temporaries of killed writers removed. Every file kiln writes goes through it
 * (kiln_safetensors_save, kiln_image_write), as a FILE* the writer fills. */
#ifndef KILN_ATOMIC_FILE_H
#define KILN_ATOMIC_FILE_H

#include "internal.h"

#include <stdio.h>

typedef struct {
    char *target; /* the file replaced: path with symbolic links followed */
    char *tmp;    /* "<target>.tmp.XXXXXX" */
    FILE *f;      /* open for writing; the encoder writes here */
    int lockfd;   /* an flock on tmp, held until the rename (see core/atomic_file.c) */
} kiln__atomic_file;

/* Creates the temporary file. On failure records KILN_STATUS_IO (naming op and path,
 * e.g. a missing directory) or OOM, and leaves nothing behind. */
kiln_status kiln__atomic_begin(kiln__atomic_file *a, const char *op, const char *path);
/* Flushes, fsyncs, closes and renames the temporary file over the target. On failure
 * records KILN_STATUS_IO naming the step, removes the temporary file and leaves the
 * target untouched. Either way a is finished. */
kiln_status kiln__atomic_commit(kiln__atomic_file *a, const char *op);
/* Gives up: closes and removes the temporary file. Safe on a finished or zeroed a. */
void kiln__atomic_abort(kiln__atomic_file *a);

#endif

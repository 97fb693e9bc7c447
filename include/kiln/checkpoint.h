/* kiln checkpoint API (filled in by its area). */
#ifndef KILN_CHECKPOINT_H
#define KILN_CHECKPOINT_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif

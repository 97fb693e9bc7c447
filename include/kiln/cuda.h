/* kiln cuda API (filled in by its area). */
#ifndef KILN_CUDA_H
#define KILN_CUDA_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif

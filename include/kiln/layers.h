/* kiln layers API (filled in by its area). */
#ifndef KILN_LAYERS_H
#define KILN_LAYERS_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif

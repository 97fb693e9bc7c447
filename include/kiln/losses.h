/* kiln losses API (filled in by its area). */
#ifndef KILN_LOSSES_H
#define KILN_LOSSES_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif

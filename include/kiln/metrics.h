/* kiln metrics API (filled in by its area). */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif

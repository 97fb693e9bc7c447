/* kiln module API (filled in by its area). */
#ifndef KILN_MODULE_H
#define KILN_MODULE_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif

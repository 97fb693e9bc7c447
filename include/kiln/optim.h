/* kiln optim API (filled in by its area). */
#ifndef KILN_OPTIM_H
#define KILN_OPTIM_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif
#endif

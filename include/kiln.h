/* kiln: a deep-learning framework in C. Include this one header. */
#ifndef KILN_H
#define KILN_H

#include "kiln/core.h"
#include "kiln/ops.h"

#endif

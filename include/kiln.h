/* kiln: a deep-learning framework in C. Include this one header. */
#ifndef KILN_H
#define KILN_H

#include "kiln/core.h"
#include "kiln/ops.h"
#include "kiln/layers.h"
#include "kiln/module.h"
#include "kiln/losses.h"
#include "kiln/metrics.h"
#include "kiln/optim.h"
#include "kiln/checkpoint.h"
#include "kiln/cuda.h"
#include "kiln/abi.h"
#include "kiln/image.h"

#endif

/* transitional: deleted once no file includes it (optim/optimizer.c and optim/clip.c:
 * the optimizer and clipping entry points are declared in launch_optimizer.h). */
#include "launch_optimizer.h"

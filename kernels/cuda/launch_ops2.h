/* transitional: deleted once no file includes it (losses.cu: its launchers are
 * declared in launch_losses.h). */
#include "launch_losses.h"

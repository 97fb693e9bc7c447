/* Small model-building helpers shared by the example programs. */
#include "kiln_examples.h"

kiln_module *kiln_sequential_of(int n, kiln_module **layers) {
    kiln_module *s = kiln_sequential_create();
    for (int i = 0; i < n; i++)
        if (kiln_sequential_append(s, layers[i]) != KILN_STATUS_OK) break; /* the error stays recorded */
    return s;
}

/* Small model-building helpers shared by the example programs. */
#include "kiln_examples.h"

kiln_module *kiln_sequential_of(int n, kiln_module **layers) {
    kiln_module *s = kiln_sequential_create();
    bool ok = s != NULL;
    /* kiln_sequential_append owns its child even when it fails (it frees it), so every
     * layer is handed over, also after a failure: none leaks. */
    for (int i = 0; i < n; i++)
        if (s ? kiln_sequential_append(s, layers[i]) != KILN_STATUS_OK : (kiln_module_free(layers[i]), true)) ok = false;
    if (ok) return s;
    if (s) kiln_module_free(s); /* a model missing a layer is no model: the first error stays recorded */
    return NULL;
}

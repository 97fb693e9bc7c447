/* Small model-building and training helpers shared by the example programs. */
#include "kx.h"

#include <stdlib.h>

kiln_module *kx_sequential_of(int n, kiln_module **layers) {
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

/* The parameters of m as a malloc'd array for an optimizer (which copies it). */
static kiln_tensor **parameters(kiln_module *m, int *n) {
    *n = kiln_module_num_parameters(m);
    kiln_tensor **p = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *p);
    if (!p) return kiln_set_error(KILN_STATUS_OOM, "out of memory for %d parameters", *n), NULL;
    for (int i = 0; i < *n; i++) p[i] = kiln_module_parameter(m, i, NULL);
    return p;
}

kiln_optimizer *kx_module_adam(kiln_module *m, double lr) {
    int n;
    kiln_tensor **p = parameters(m, &n);
    if (!p) return NULL;
    kiln_adam_options o = kiln_adam_defaults();
    o.lr = lr;
    kiln_optimizer *opt = kiln_optim_adam(p, n, o);
    free(p);
    return opt;
}

kiln_optimizer *kx_module_sgd(kiln_module *m, double lr, double momentum) {
    int n;
    kiln_tensor **p = parameters(m, &n);
    if (!p) return NULL;
    kiln_sgd_options o = kiln_sgd_defaults();
    o.lr = lr;
    o.momentum = momentum;
    kiln_optimizer *opt = kiln_optim_sgd(p, n, o);
    free(p);
    return opt;
}

kiln_status kx_train_step(kiln_optimizer *opt, kiln_tensor *loss, double *value) {
    kiln_optimizer_zero_grad(opt);
    /* ops handed NULL return NULL and keep the first error: one check covers the step */
    kiln_status st = kiln_backward(loss, NULL);
    if (st == KILN_STATUS_OK) st = kiln_optimizer_step(opt);
    if (st == KILN_STATUS_OK) *value = kiln_tensor_item(loss); /* waits for the device */
    return st;
}

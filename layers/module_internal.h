/* Private helpers shared by the module files (layers/module*.c). */
#ifndef KILN_MODULE_INTERNAL_H
#define KILN_MODULE_INTERNAL_H

#include "../core/internal.h"

/* "module 'enc1.0' (Linear)" or "root module (Sequential)", for error messages. */
const char *kiln__module_describe(const kiln_module *m, char *buf, size_t n);

#endif
